"""Ports (typing.Protocol) and their implementations: Kafka, HTTP gateway, files, engines."""
