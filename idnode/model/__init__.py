"""Value types shared by the rules (idnode.core) and the stores and caches below them, below
both: identifiers, credentials, audit entries, the rows the stores return (rows, events),
invalidation keys, the shared cache tier's probe and the domain errors. They import nothing of
idnode."""
