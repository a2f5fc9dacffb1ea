"""The processes gethookd runs: the master (daemon, supervisor), its roles (the API server
and the delivery worker) and the embedded PostgreSQL. Nothing here defines webhook rules;
the roles call into the domain modules (services, queue, deliver) after fork."""
