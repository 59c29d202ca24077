"""RabbitMQ transport: topology and a confirming publisher of raw envelope bytes."""
