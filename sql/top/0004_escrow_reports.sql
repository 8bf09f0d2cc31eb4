-- Escrow reports received from secondary nodes (draft-wu-identifier-data-escrow-interface):
-- one per deposit, as checked on arrival.
CREATE TABLE escrow_reports (
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    deposit_id  text NOT NULL,
    kind        text NOT NULL,
    prev_id     text,
    watermark   timestamptz NOT NULL,
    sha256      text NOT NULL,
    report      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_prefix, deposit_id)
);
