-- testdata/orders/data.sql — fills "orders" (testdata/orders/schema.sql) with
-- deterministic generated rows: 1,000,000 by default.
--
-- A psql script (uses psql variables): run it after schema.sql with
--     psql -X -v ON_ERROR_STOP=1 -v rows=1000000 -f schema.sql -f data.sql "$DSN"
-- (-v rows=N is optional). setseed() makes every run produce the same rows;
-- the INSERT ... SELECT runs without parallel workers, so random() is called in
-- the same order each time.
--
-- Roughly: 60% of notes are NULL, 40% of shipped_at are NULL, 10% of tags and
-- 5% of ips are NULL; notes include empty strings, tabs, newlines, CR,
-- backslashes, a literal "\N", quotes and multi-byte unicode (accents, CJK,
-- emoji); tags include empty arrays and NULL elements; ips mix IPv4, IPv6 and
-- networks.

\if :{?rows}
\else
\set rows 1000000
\endif

-- Hash-join the small basket pool (below) into the generated rows so the rows
-- keep arriving in id order (a merge join would shuffle them).
SET enable_mergejoin = off;
SET enable_nestloop = off;

SELECT setseed(0.4242) \gset

INSERT INTO orders (id, customer_id, status, total, currency, created_at,
                    shipped_at, items, note, tags, ip)
SELECT
    s.g,
    1 + floor(power(s.r1, 2) * 250000)::bigint,          -- skewed: some customers order a lot
    s.status,
    CASE WHEN s.r2 < 0.01 THEN 0.00
         ELSE round((5 + power(s.r2, 3) * 4995)::numeric, 2) END,
    (ARRAY['EUR','EUR','EUR','USD','USD','GBP','CHF','JPY','SEK','PLN'])[1 + floor(s.r3 * 10)::int],
    s.created_at,
    CASE WHEN s.status IN ('shipped', 'delivered', 'refunded')
         THEN s.created_at + s.r4 * interval '9 days' + interval '2 hours' END,
    p.items,
    CASE
        WHEN s.r5 < 0.60 THEN NULL
        WHEN s.r5 < 0.70 THEN 'Leave at the front door'
        WHEN s.r5 < 0.74 THEN E'Ring twice\nthen wait'
        WHEN s.r5 < 0.78 THEN E'col1\tcol2\tcol3'
        WHEN s.r5 < 0.81 THEN E'path C:\\orders\\' || s.g || E'\\invoice.pdf'
        WHEN s.r5 < 0.84 THEN 'Café — naïve façade, 日本語のメモ, emoji 📦🚚'
        WHEN s.r5 < 0.86 THEN ''
        WHEN s.r5 < 0.87 THEN E'\\N'
        WHEN s.r5 < 0.88 THEN E'windows line\r\nending'
        WHEN s.r5 < 0.89 THEN E'it''s "quoted", with commas, and {braces}'
        WHEN s.r5 < 0.90 THEN repeat('long note ', 50)
        ELSE 'customer note #' || s.g
    END,
    CASE
        WHEN s.r6 < 0.10 THEN NULL
        WHEN s.r6 < 0.30 THEN '{}'::text[]
        WHEN s.r6 < 0.60 THEN ARRAY['web']
        WHEN s.r6 < 0.80 THEN ARRAY['app', 'express']
        WHEN s.r6 < 0.90 THEN ARRAY['b2b', 'net 30', 'vip']
        WHEN s.r6 < 0.95 THEN ARRAY['has "quotes"', 'comma,inside', E'back\\slash']
        ELSE ARRAY['partial', NULL, 'ünïcödé']
    END,
    CASE
        WHEN s.r7 < 0.05 THEN NULL
        WHEN s.r7 < 0.80 THEN ('10.' || (s.g >> 16 & 255) || '.' || (s.g >> 8 & 255) || '.' || (s.g & 255))::inet
        WHEN s.r7 < 0.95 THEN ('2001:db8:' || to_hex(s.g >> 16) || '::' || to_hex(s.g & 65535))::inet
        ELSE ('192.168.' || (s.g & 255) || '.0/24')::inet
    END
FROM (
    -- Per-row random values, each drawn once per row.
    SELECT g,
           random() AS r1, random() AS r2, random() AS r3, random() AS r4,
           random() AS r5, random() AS r6, random() AS r7,
           (ARRAY['pending','paid','shipped','delivered','cancelled','refunded'])
               [1 + floor(random() * 6)::int]::order_status AS status,
           floor(random() * 4096)::int AS item_k,
           timestamptz '2023-01-01 00:00:00+00'
               + (g::float8 / :rows) * interval '700 days'   -- ids grow with time
               + random() * interval '6 hours' AS created_at
    FROM generate_series(1, :rows) AS g
    OFFSET 0  -- keep the subquery: each random() above is evaluated once per row
) AS s
JOIN (
    -- 4096 distinct line-item baskets (1 to 3 items), built once and joined
    -- in: building jsonb per row would triple the load time. Derived from k
    -- only, so the join order cannot change them.
    SELECT k,
           jsonb_build_array(
               jsonb_build_object('sku', 'SKU-' || lpad((1 + k * 7919 % 99999)::text, 5, '0'),
                                  'qty', 1 + k % 4,
                                  'price', round(1 + (k * 104729 % 49900) / 100.0, 2)))
           || CASE WHEN k % 9 < 4 THEN jsonb_build_array(
               jsonb_build_object('sku', 'SKU-' || lpad((1 + k * 31 % 99999)::text, 5, '0'),
                                  'qty', 1,
                                  'price', round(1 + (k * 7 % 9900) / 100.0, 2),
                                  'gift', k % 10 = 0,
                                  'options', jsonb_build_object('color', (ARRAY['red','blue','black','white'])[1 + k % 4],
                                                                'size', NULL)))
              ELSE '[]'::jsonb END
           || CASE WHEN k % 10 = 3 THEN jsonb_build_array(
               jsonb_build_object('sku', 'SKU-00001', 'qty', 2, 'price', 9.99,
                                  'label', E'Kaffee \u2615 "Spezial"\tgemahlen'))
              ELSE '[]'::jsonb END AS items
    FROM generate_series(0, 4095) AS k
    OFFSET 0  -- keep the subquery: each basket is built once, not once per order
) AS p ON p.k = s.item_k;

RESET enable_mergejoin;
RESET enable_nestloop;
