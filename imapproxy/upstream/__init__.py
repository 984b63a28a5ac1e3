"""The imapc side: connections to the upstream server. The only place that imports aioimaplib."""
