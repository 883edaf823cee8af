-- Rows for pagila's schema that satisfy every foreign key; generated, deterministic.
SELECT setseed(0.42);
INSERT INTO language (language_id, name) SELECT g, (ARRAY['English','Italian','Japanese','Mandarin','French','German'])[g] FROM generate_series(1, 6) g;
INSERT INTO country (country_id, country) SELECT g, 'Country ' || g FROM generate_series(1, 100) g;
INSERT INTO city (city_id, city, country_id) SELECT g, 'City ' || g, 1 + (g * 7) % 100 FROM generate_series(1, 500) g;
INSERT INTO address (address_id, address, address2, district, city_id, postal_code, phone)
  SELECT g, g || ' Main Street', CASE WHEN g % 3 = 0 THEN 'Suite ' || g END, 'District ' || (g % 40), 1 + (g * 13) % 500,
         lpad((g * 37 % 99999)::text, 5, '0'), '+1-555-' || lpad(g::text, 4, '0') FROM generate_series(1, 1200) g;
INSERT INTO category (category_id, name) SELECT g, 'Category ' || g FROM generate_series(1, 16) g;
INSERT INTO actor (actor_id, first_name, last_name) SELECT g, 'First' || g, 'Last' || (g % 97) FROM generate_series(1, 200) g;
INSERT INTO film (film_id, title, description, release_year, language_id, original_language_id, rental_duration, rental_rate, length,
                  replacement_cost, rating, special_features, fulltext)
  SELECT g, 'FILM TITLE ' || g, 'A story about ' || md5(g::text), 1990 + g % 35, 1 + g % 6, CASE WHEN g % 4 = 0 THEN 1 + (g + 1) % 6 END,
         3 + g % 5, (g % 5) + 0.99, 45 + g % 140, 9.99 + g % 20,
         (ARRAY['G','PG','PG-13','R','NC-17'])[1 + g % 5]::mpaa_rating,
         CASE WHEN g % 2 = 0 THEN ARRAY['Trailers','Deleted Scenes'] ELSE ARRAY['Commentaries'] END,
         to_tsvector('english', 'FILM TITLE ' || g || ' A story about ' || md5(g::text))
  FROM generate_series(1, 1000) g;
INSERT INTO film_actor (actor_id, film_id) SELECT DISTINCT 1 + (f * 7 + k * 31) % 200, f FROM generate_series(1, 1000) f, generate_series(1, 5) k;
INSERT INTO film_category (film_id, category_id) SELECT f, 1 + f % 16 FROM generate_series(1, 1000) f;
INSERT INTO store (store_id, manager_staff_id, address_id) VALUES (1, 1, 1), (2, 2, 2);
INSERT INTO staff (staff_id, first_name, last_name, address_id, email, store_id, username, password, picture)
  VALUES (1, 'Mike', 'Hillyer', 3, 'mike@example.com', 1, 'mike', md5('x'), '\x89504e47'::bytea),
         (2, 'Jon', 'Stephens', 4, 'jon@example.com', 2, 'jon', NULL, NULL);
INSERT INTO inventory (inventory_id, film_id, store_id) SELECT g, 1 + g % 1000, 1 + g % 2 FROM generate_series(1, 4500) g;
INSERT INTO customer (customer_id, store_id, first_name, last_name, email, address_id, active, create_date)
  SELECT g, 1 + g % 2, 'Cust' || g, 'Omer' || (g % 300), 'c' || g || '@example.org', 5 + g % 1190, g % 2, date '2021-01-01' + g % 365
  FROM generate_series(1, 600) g;
INSERT INTO rental (rental_id, rental_date, inventory_id, customer_id, return_date, staff_id)
  SELECT g, timestamptz '2022-01-01 00:00+00' + g * interval '97 minutes', 1 + (g * 17) % 4500, 1 + (g * 11) % 600,
         CASE WHEN g % 10 <> 0 THEN timestamptz '2022-01-04 00:00+00' + g * interval '97 minutes' END, 1 + g % 2
  FROM generate_series(1, 16000) g;
INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, payment_date)
  SELECT g, r.customer_id, r.staff_id, r.rental_id, (g % 11) + 0.99, r.rental_date + interval '1 hour'
  FROM generate_series(1, 16000) g JOIN rental r ON r.rental_id = g;
-- Every sequence where a loaded database leaves it (pg_dump's data sections
-- end the same way): at the largest value of the column whose DEFAULT
-- draws from it (pagila's sequences are not OWNED BY their columns).
SELECT pg_catalog.setval(d.refobjid::regclass, m.maxval)
  FROM pg_catalog.pg_attrdef ad
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                             AND d.refclassid = 'pg_class'::regclass
  JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
  JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  CROSS JOIN LATERAL (SELECT (xpath('/row/m/text()',
      query_to_xml(format('SELECT max(%I) AS m FROM %s', a.attname, ad.adrelid::regclass), false, true, '')))[1]::text::bigint AS maxval) m
 WHERE m.maxval IS NOT NULL
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = ad.adrelid);
