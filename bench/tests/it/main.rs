//! The bench against the real services (PostgreSQL and RabbitMQ at their
//! usual local addresses, like every other integration test).

mod quick;
