"""What the proxy tells its operator: Prometheus metrics, structured logs, the admin socket
(``imapproxy who`` / ``imapproxy kick``). Nothing here changes what a client sees."""
