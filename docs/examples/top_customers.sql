-- The seed's question: the top 5 customers by total purchase on a day.
SELECT customer_id, customer_name, customer_city, round(sum(total_amount), 2) AS total_purchase, count(*) AS purchases
FROM sales_star
WHERE sale_date = DATE '2025-03-20'
GROUP BY customer_id, customer_name, customer_city
ORDER BY total_purchase DESC, customer_id
LIMIT 5;
