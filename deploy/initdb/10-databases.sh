#!/bin/sh
# Creates one database per node of the development federation.
set -e
for db in $(echo "$POSTGRES_MULTIPLE_DATABASES" | tr ',' ' '); do
  psql -v ON_ERROR_STOP=1 -U postgres -c "CREATE DATABASE $db"
done
