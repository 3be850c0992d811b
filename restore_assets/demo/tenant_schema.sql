-- The demo tenant schema: one customer of the SaaS, the shape of the AWS multi-tenant recovery
-- sample (users, products, orders, order_items), written for restore-assets.
--
-- Template markers, substituted by restore_assets.demo.schema.schema_ddl():
--   {{SCHEMA}}          the schema as a quoted identifier (psycopg.sql.Identifier)
--   {{schema}}          the schema as an application developer writes it inside a function
--                       body: bare when that is valid SQL, quoted otherwise
--   {{schema_literal}}  the same, for use inside a single-quoted string ('' doubled)
-- Function bodies are text in the catalog: their schema references are what a schema rename
-- has to rewrite. Everything else (defaults, views, policies, checks) is stored as a tree.
--
-- A line holding only the post-data marker splits the file: above it what the bulk load needs
-- (types, sequences, functions, tables), below it what is cheaper to build after the load.

-- the application role the policies and grants name (cluster-wide: created once, never dropped)
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'demo_app') THEN
        CREATE ROLE demo_app NOLOGIN;
    END IF;
END;
$do$;

CREATE SCHEMA {{SCHEMA}};

COMMENT ON SCHEMA {{SCHEMA}} IS 'restore-assets demo tenant';

-- ---------------------------------------------------------------------------- types
CREATE TYPE {{SCHEMA}}.user_status AS ENUM ('active', 'inactive', 'pending', 'suspended');

CREATE TYPE {{SCHEMA}}.order_status AS ENUM (
    'pending', 'processing', 'shipped', 'completed', 'cancelled', 'refunded'
);

-- ---------------------------------------------------------------------------- sequences
-- users.id comes from user_id_seq (owned by the column, as an application would set it up)
CREATE SEQUENCE {{SCHEMA}}.user_id_seq
    AS integer START WITH 1000 INCREMENT BY 1 MINVALUE 1000 MAXVALUE 2147483647 CACHE 1;

-- a free-standing sequence, shared by the order_number default and nothing else
CREATE SEQUENCE {{SCHEMA}}.order_number_seq
    AS bigint START WITH 100000 INCREMENT BY 1 MINVALUE 100000 CACHE 1;

-- the counter behind generate_user_code()
CREATE SEQUENCE {{SCHEMA}}.user_code_seq START WITH 1 CACHE 1;

-- ---------------------------------------------------------------------------- functions
CREATE FUNCTION {{SCHEMA}}.generate_user_code() RETURNS varchar
    LANGUAGE plpgsql VOLATILE
AS $fn$
DECLARE
    n bigint;
BEGIN
    n := nextval('{{schema_literal}}.user_code_seq');
    RETURN 'USR-' || to_char(n, 'FM00000000');
END;
$fn$;

CREATE FUNCTION {{SCHEMA}}.update_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$fn$;

-- a pure function used by the customer_lifetime_value view
CREATE FUNCTION {{SCHEMA}}.tier_for(p_total numeric) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_total >= 20000 THEN 'platinum'
        WHEN p_total >= 5000 THEN 'gold'
        WHEN p_total >= 1000 THEN 'silver'
        ELSE 'bronze'
    END
$fn$;

-- application API: the activity generator registers users and places orders through these
CREATE FUNCTION {{SCHEMA}}.register_user(
    p_name text, p_email text, p_metadata jsonb DEFAULT '{}'::jsonb
) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    v_id integer := nextval('{{schema_literal}}.user_id_seq');
BEGIN
    INSERT INTO {{schema}}.users (id, name, email, status, metadata)
    VALUES (v_id, p_name, p_email, 'pending'::{{schema}}.user_status, p_metadata);
    RETURN v_id;
END;
$fn$;

-- SECURITY DEFINER with a pinned search_path: the body names its tables unqualified
CREATE FUNCTION {{SCHEMA}}.recalc_order_total(p_order_id bigint) RETURNS numeric
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = {{schema}}, pg_catalog
AS $fn$
DECLARE
    v_total numeric(12,2);
BEGIN
    UPDATE orders o
       SET total_amount = coalesce(
               (SELECT sum(i.line_total) FROM order_items i WHERE i.order_id = p_order_id), 0)
     WHERE o.id = p_order_id
    RETURNING o.total_amount INTO v_total;
    RETURN v_total;
END;
$fn$;

-- p_items: [{"product_id": 1, "quantity": 2}, ...]; unit prices are the products' current prices
CREATE FUNCTION {{SCHEMA}}.place_order(
    p_user_id integer, p_items jsonb, p_currency character(3) DEFAULT 'EUR'
) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    v_order_id bigint;
BEGIN
    INSERT INTO {{schema}}.orders (user_id, status, total_amount, currency, shipping_address)
    SELECT u.id, 'pending'::{{schema}}.order_status, 0, p_currency,
           jsonb_build_object('city', u.city, 'country', u.country_code)
      FROM {{schema}}.users u
     WHERE u.id = p_user_id
    RETURNING id INTO v_order_id;
    IF v_order_id IS NULL THEN
        RAISE EXCEPTION 'no user with id %', p_user_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO {{schema}}.order_items (order_id, product_id, quantity, unit_price)
    SELECT v_order_id, p.id, (item->>'quantity')::integer, p.price
      FROM jsonb_array_elements(p_items) AS item
      JOIN {{schema}}.products p ON p.id = (item->>'product_id')::integer;
    PERFORM {{schema}}.recalc_order_total(v_order_id);
    RETURN v_order_id;
END;
$fn$;

-- ---------------------------------------------------------------------------- tables
CREATE TABLE {{SCHEMA}}.users (
    id integer DEFAULT nextval('{{schema_literal}}.user_id_seq'::regclass) NOT NULL,
    user_code varchar(20) DEFAULT {{SCHEMA}}.generate_user_code() NOT NULL,
    name varchar(100) NOT NULL,
    email varchar(255) NOT NULL,
    status {{SCHEMA}}.user_status DEFAULT 'pending' NOT NULL,
    age integer,
    balance numeric(12,2) DEFAULT 0 NOT NULL,
    country_code character(2),
    city text,
    interests text[],
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    last_login_at timestamptz,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT users_age_check CHECK (age IS NULL OR age BETWEEN 13 AND 120),
    CONSTRAINT users_balance_check CHECK (balance >= 0),
    CONSTRAINT users_email_check CHECK (position('@' in email) > 1)
);

ALTER SEQUENCE {{SCHEMA}}.user_id_seq OWNED BY {{SCHEMA}}.users.id;

CREATE TABLE {{SCHEMA}}.products (
    id integer GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    sku text NOT NULL,
    name varchar(200) NOT NULL,
    description text,
    price numeric(12,2) NOT NULL,
    stock_quantity integer DEFAULT 0 NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    dimensions_mm integer[],
    attributes jsonb DEFAULT '{}'::jsonb NOT NULL,
    is_active boolean DEFAULT true NOT NULL,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT products_price_check CHECK (price >= 0),
    CONSTRAINT products_stock_check CHECK (stock_quantity >= 0)
);

CREATE TABLE {{SCHEMA}}.orders (
    id bigserial NOT NULL,
    public_id uuid DEFAULT gen_random_uuid() NOT NULL,
    order_number text DEFAULT ('ORD-' || nextval('{{schema_literal}}.order_number_seq'::regclass)) NOT NULL,
    user_id integer NOT NULL,
    status {{SCHEMA}}.order_status DEFAULT 'pending' NOT NULL,
    total_amount numeric(12,2) DEFAULT 0 NOT NULL,
    currency character(3) DEFAULT 'EUR' NOT NULL,
    shipping_address jsonb,
    notes text,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT orders_total_check CHECK (total_amount >= 0)
);

CREATE TABLE {{SCHEMA}}.order_items (
    id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    order_id bigint NOT NULL,
    product_id integer NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    line_total numeric(12,2) GENERATED ALWAYS AS (quantity * unit_price) STORED,
    created_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_items_unit_price_check CHECK (unit_price >= 0)
);

-- a SQL-standard body is parsed at creation: it needs the orders table to exist
CREATE FUNCTION {{SCHEMA}}.user_order_count(p_user_id integer) RETURNS bigint
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT count(*) FROM {{SCHEMA}}.orders o WHERE o.user_id = p_user_id;
END;

COMMENT ON TABLE {{SCHEMA}}.users IS 'Customers of this tenant (Zoë, 東京, ...)';
COMMENT ON COLUMN {{SCHEMA}}.users.user_code IS 'Public code, from generate_user_code()';
COMMENT ON COLUMN {{SCHEMA}}.order_items.line_total IS 'Generated: quantity * unit_price';

-- @@post-data@@

-- ---------------------------------------------------------------------------- keys
ALTER TABLE {{SCHEMA}}.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE {{SCHEMA}}.products ADD CONSTRAINT products_pkey PRIMARY KEY (id);
ALTER TABLE {{SCHEMA}}.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
ALTER TABLE {{SCHEMA}}.order_items ADD CONSTRAINT order_items_pkey PRIMARY KEY (id);

ALTER TABLE {{SCHEMA}}.users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE {{SCHEMA}}.users ADD CONSTRAINT users_user_code_key UNIQUE (user_code);
ALTER TABLE {{SCHEMA}}.products ADD CONSTRAINT products_sku_key UNIQUE (sku);
ALTER TABLE {{SCHEMA}}.orders ADD CONSTRAINT orders_order_number_key UNIQUE (order_number);
ALTER TABLE {{SCHEMA}}.orders ADD CONSTRAINT orders_public_id_key UNIQUE (public_id);

ALTER TABLE {{SCHEMA}}.orders
    ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES {{SCHEMA}}.users (id) ON DELETE CASCADE;
ALTER TABLE {{SCHEMA}}.order_items
    ADD CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id)
    REFERENCES {{SCHEMA}}.orders (id) ON DELETE CASCADE;
ALTER TABLE {{SCHEMA}}.order_items
    ADD CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id)
    REFERENCES {{SCHEMA}}.products (id) ON DELETE RESTRICT;

-- ---------------------------------------------------------------------------- indexes
CREATE INDEX users_status_idx ON {{SCHEMA}}.users USING btree (status);
CREATE INDEX users_created_at_idx ON {{SCHEMA}}.users USING btree (created_at);
CREATE INDEX users_lower_email_idx ON {{SCHEMA}}.users USING btree (lower((email)::text));
CREATE INDEX users_metadata_idx ON {{SCHEMA}}.users USING gin (metadata);
CREATE INDEX products_price_idx ON {{SCHEMA}}.products USING btree (price);
CREATE INDEX products_tags_idx ON {{SCHEMA}}.products USING gin (tags);
CREATE INDEX products_attributes_idx ON {{SCHEMA}}.products USING gin (attributes jsonb_path_ops);
CREATE INDEX orders_user_id_idx ON {{SCHEMA}}.orders USING btree (user_id);
CREATE INDEX orders_status_created_at_idx ON {{SCHEMA}}.orders USING btree (status, created_at DESC);
CREATE INDEX orders_open_idx ON {{SCHEMA}}.orders USING btree (created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX order_items_order_id_idx ON {{SCHEMA}}.order_items USING btree (order_id);
CREATE INDEX order_items_product_id_idx ON {{SCHEMA}}.order_items USING btree (product_id);

-- ---------------------------------------------------------------------------- triggers
CREATE TRIGGER users_updated_at BEFORE UPDATE ON {{SCHEMA}}.users
    FOR EACH ROW EXECUTE FUNCTION {{SCHEMA}}.update_updated_at();
CREATE TRIGGER products_updated_at BEFORE UPDATE ON {{SCHEMA}}.products
    FOR EACH ROW EXECUTE FUNCTION {{SCHEMA}}.update_updated_at();
CREATE TRIGGER orders_updated_at BEFORE UPDATE ON {{SCHEMA}}.orders
    FOR EACH ROW EXECUTE FUNCTION {{SCHEMA}}.update_updated_at();

-- ---------------------------------------------------------------------------- views
CREATE VIEW {{SCHEMA}}.order_summary WITH (security_invoker = true) AS
SELECT o.id AS order_id,
       o.order_number,
       o.status,
       u.id AS user_id,
       u.name AS customer_name,
       count(i.id) AS item_count,
       coalesce(sum(i.quantity), 0) AS units,
       o.total_amount,
       o.currency,
       o.created_at
  FROM {{SCHEMA}}.orders o
  JOIN {{SCHEMA}}.users u ON u.id = o.user_id
  LEFT JOIN {{SCHEMA}}.order_items i ON i.order_id = o.id
 GROUP BY o.id, u.id;

CREATE VIEW {{SCHEMA}}.customer_lifetime_value AS
SELECT u.id AS user_id,
       u.user_code,
       u.email,
       count(o.id) FILTER (WHERE o.status <> ALL (ARRAY['cancelled', 'refunded']::{{SCHEMA}}.order_status[])) AS orders,
       coalesce(sum(o.total_amount) FILTER (WHERE o.status <> ALL (ARRAY['cancelled', 'refunded']::{{SCHEMA}}.order_status[])), 0) AS lifetime_value,
       {{SCHEMA}}.tier_for(coalesce(sum(o.total_amount) FILTER (WHERE o.status <> ALL (ARRAY['cancelled', 'refunded']::{{SCHEMA}}.order_status[])), 0)) AS tier,
       min(o.created_at) AS first_order_at,
       max(o.created_at) AS last_order_at
  FROM {{SCHEMA}}.users u
  LEFT JOIN {{SCHEMA}}.orders o ON o.user_id = u.id
 GROUP BY u.id;

COMMENT ON VIEW {{SCHEMA}}.customer_lifetime_value IS 'Revenue per customer, cancelled and refunded orders excluded';

-- ---------------------------------------------------------------------------- row level security
-- The application connects as a member of demo_app and sets app.tenant (the database) and
-- app.user_id (the signed-in user); the table owner and superusers bypass these policies.
ALTER TABLE {{SCHEMA}}.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE {{SCHEMA}}.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE {{SCHEMA}}.order_items ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_tenant ON {{SCHEMA}}.users AS PERMISSIVE FOR ALL TO demo_app
    USING (current_setting('app.tenant', true) = current_database())
    WITH CHECK (current_setting('app.tenant', true) = current_database());
CREATE POLICY users_self_update ON {{SCHEMA}}.users AS RESTRICTIVE FOR UPDATE TO demo_app
    USING (id = nullif(current_setting('app.user_id', true), '')::integer);
CREATE POLICY orders_of_visible_users ON {{SCHEMA}}.orders AS PERMISSIVE FOR ALL TO demo_app
    USING (user_id IN (SELECT u.id FROM {{SCHEMA}}.users u WHERE u.status <> 'suspended'::{{SCHEMA}}.user_status));
CREATE POLICY order_items_of_visible_orders ON {{SCHEMA}}.order_items AS PERMISSIVE FOR SELECT TO demo_app
    USING (EXISTS (SELECT 1 FROM {{SCHEMA}}.orders o WHERE o.id = order_id));

-- ---------------------------------------------------------------------------- privileges
GRANT USAGE ON SCHEMA {{SCHEMA}} TO demo_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {{SCHEMA}} TO demo_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {{SCHEMA}} TO demo_app;
GRANT EXECUTE ON FUNCTION {{SCHEMA}}.place_order(integer, jsonb, character) TO demo_app;
