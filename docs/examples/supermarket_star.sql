-- The supermarket star schema over the lake: the sales fact (the lake's `sales` table) joined
-- to its five dimensions. kappa-query:
--   kappa-query --lake data/lake --table sales \
--     --register customers=../shared/seed-data/supermarket/dimensions/supermarket_customers.csv \
--     --register products=../shared/seed-data/supermarket/dimensions/supermarket_products.csv \
--     --register categories=../shared/seed-data/supermarket/dimensions/supermarket_categories.csv \
--     --register branches=../shared/seed-data/supermarket/dimensions/supermarket_branches.csv \
--     --register locations=../shared/seed-data/supermarket/dimensions/supermarket_locations.csv \
--     --init docs/examples/supermarket_star.sql -f docs/examples/top_customers.sql
-- The same views work in Athena over the Glue tables (docs/athena.md).
CREATE VIEW sales_star AS
SELECT
  s.sale_id,
  s.sale_date,
  s.quantity,
  s.unit_price,
  s.total_amount,
  s.customer_id,
  c.first_name || ' ' || c.last_name AS customer_name,
  cl.city AS customer_city,
  p.product_name,
  cat.category_name,
  b.branch_name,
  bl.city AS branch_city,
  bl.region AS branch_region
FROM sales s
JOIN customers c ON c.customer_id = s.customer_id
JOIN locations cl ON cl.location_id = c.location_id
JOIN products p ON p.product_id = s.product_id
JOIN categories cat ON cat.category_id = p.category_id
JOIN branches b ON b.branch_id = s.branch_id
JOIN locations bl ON bl.location_id = b.location_id;
