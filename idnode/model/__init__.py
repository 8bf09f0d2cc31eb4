"""Value types shared by the rules (idnode.core) and the stores (idnode.store), below both:
identifiers, credentials, audit entries and the domain errors. They import nothing of idnode."""
