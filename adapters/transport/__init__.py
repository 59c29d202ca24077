"""RabbitMQ transport: topology, raw-bytes serializer and a confirming publisher."""
