"""In-memory implementations of the ports: what the services' unit tests run on. Each keeps the semantics of its
AWS twin (the contract suites in tests/integration run the same behaviours against both), not its speed or cost."""
