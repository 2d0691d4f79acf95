"""TLS on the server port as Consul configures it: certificates (``consim tls``), the
agent's TLS settings, and the contexts both ends of a connection use."""
