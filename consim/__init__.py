"""consim: a simulated Consul server cluster."""

# The Consul version consim reports (Config.Version, the serf ``build`` tag, autopilot's Version).
CONSUL_VERSION = "1.21.0"
