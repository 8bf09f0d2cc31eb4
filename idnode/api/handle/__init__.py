"""The Handle/IDIS native protocol (RFC 3652 family): codec, service and TCP/UDP servers."""
