-- An append checks each identifier's latest event (time order): one index probe per
-- identifier instead of reading and sorting all of its events.
CREATE INDEX trace_events_latest ON trace_events (identifier, occurred_at DESC, leaf DESC);
