"""The only code that touches the kernel or a daemon: namespaces, links, routes, nftables, tc, daemons."""
