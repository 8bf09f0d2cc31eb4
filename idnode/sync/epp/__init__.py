"""EPP (RFC 5730, over TLS per RFC 5734) between this node's Second Node Management System
(the client) and the top-level node's Business Management System (the server), after
draft-chen-top-level-interface-protocol and draft-chen-epp-identifier-mapping."""
