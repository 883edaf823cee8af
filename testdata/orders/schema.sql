-- testdata/orders/schema.sql — a realistic hash-partitioned "orders" table.
--
-- Applied to both the source and the destination (the destination gets empty
-- tables); testdata/orders/data.sql fills the source. Mixed column types on
-- purpose: a user-defined enum (its OID differs between servers), numeric,
-- char(n), timestamptz, jsonb, text with tabs/newlines/backslashes/unicode,
-- text[] and inet, plus many NULLs.

CREATE TYPE order_status AS ENUM
    ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded');

CREATE TABLE orders (
    id          bigint        NOT NULL,
    customer_id bigint        NOT NULL,
    status      order_status  NOT NULL DEFAULT 'pending',
    total       numeric(12,2) NOT NULL,
    currency    char(3)       NOT NULL DEFAULT 'EUR',
    created_at  timestamptz   NOT NULL DEFAULT now(),
    shipped_at  timestamptz,
    items       jsonb         NOT NULL DEFAULT '[]',
    note        text,
    tags        text[],
    ip          inet,
    PRIMARY KEY (id)
) PARTITION BY HASH (id);

CREATE TABLE orders_p00 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE orders_p01 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE orders_p02 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE orders_p03 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE orders_p04 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE orders_p05 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE orders_p06 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE orders_p07 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE orders_p08 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE orders_p09 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE orders_p10 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE orders_p11 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE orders_p12 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE orders_p13 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE orders_p14 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE orders_p15 PARTITION OF orders FOR VALUES WITH (MODULUS 16, REMAINDER 15);

CREATE INDEX orders_customer_id_idx ON orders (customer_id);
