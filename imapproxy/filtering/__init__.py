"""The filter API: what a message filter is, and the chain that runs them.

Filters themselves live in the top-level ``filters/`` package (and in third-party packages
registered under the ``imapproxy.filters`` entry-point group); this package is the contract
they implement, so the proxy never imports a concrete filter by name.
"""

from imapproxy.filtering.api import (
    AppendFilter,
    FilterContext,
    FilterError,
    FilterFactory,
    MessageFilter,
)

__all__ = ["AppendFilter", "FilterContext", "FilterError", "FilterFactory", "MessageFilter"]
