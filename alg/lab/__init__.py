"""A test lab of network namespaces: phones, a NAT router, a SIP server.

Used by the end-to-end tests and by `sipalg demo`.  Traffic never leaves
the namespaces it creates.
"""
