"""B2B rebates (issue 11): partner accounts, bulk orders, rebate programs, standings and period close. Empty until
then; it will follow the points and segments contexts: a domain here, a service on ports (its ports.py), a store
in loyalty.adapters.dynamodb, and its jobs as state machines (docs/architecture.md)."""
