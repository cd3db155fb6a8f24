"""The questions bench/query.py and bench/query-builds.py ask of a data set's table: (name, SQL,
timed), the dimension table each joins, and its key."""
import sys


# Per data set: (dimension name, dimension key, questions). A question is (name, SQL, timed).
# Partition columns are year/month/day for `wide`; flights has columns of those names, so its
# partition columns are kappa_year, kappa_month, ….
DATA_SETS = {
    "wide": ("countries", "code", [
        ("full-scan aggregate", "SELECT count(*) AS n, count(amount) AS amounts, sum(amount) AS total, avg(price) AS mean_price, max(score) AS top FROM wide", True),
        ("one-day filter", "SELECT count(*) AS n, sum(amount) AS total, avg(discount) AS mean_discount FROM wide WHERE year = 2025 AND month = 3 AND day = 15", True),
        ("group-by on strings", "SELECT country, device, count(*) AS n, sum(amount) AS total FROM wide GROUP BY country, device ORDER BY country NULLS LAST, device NULLS LAST", True),
        ("join to a dimension", "SELECT c.region, count(*) AS n, sum(w.amount) AS total FROM wide w JOIN countries c ON w.country = c.code GROUP BY c.region ORDER BY c.region", True),
        ("top-N", "SELECT event_id, amount, country FROM wide WHERE amount IS NOT NULL ORDER BY amount DESC, event_id LIMIT 10", True),
        ("window", "SELECT day, event_id, amount, r FROM (SELECT day, event_id, amount, row_number() OVER (PARTITION BY day ORDER BY amount DESC NULLS LAST, event_id) AS r FROM wide WHERE year = 2025 AND month = 2) t WHERE r <= 2 ORDER BY day, r", False),
        ("NULLs", "SELECT count(*) - count(country) AS no_country, count(*) - count(amount) AS no_amount, sum(CASE WHEN score IS NULL THEN 1 ELSE 0 END) AS no_score, count(DISTINCT status) AS statuses FROM wide", False),
        ("timestamps", "SELECT min(event_time) AS first, max(event_time) AS last, count(DISTINCT date_trunc('hour', event_time)) AS hours FROM wide", False),
    ]),
    "flights": ("airlines", "carrier", [
        ("full-scan aggregate", "SELECT count(*) AS n, count(dep_delay) AS departed, sum(distance) AS miles, avg(arr_delay) AS mean_delay, max(air_time) AS longest FROM flights", True),
        ("one-day filter", "SELECT count(*) AS n, avg(dep_delay) AS mean_delay FROM flights WHERE kappa_year = 2013 AND kappa_month = 6 AND kappa_day = 15", True),
        ("group-by on strings", "SELECT carrier, origin, count(*) AS n, avg(dep_delay) AS mean_delay FROM flights GROUP BY carrier, origin ORDER BY carrier, origin", True),
        ("join to a dimension", "SELECT a.name, count(*) AS n, sum(f.distance) AS miles FROM flights f JOIN airlines a ON f.carrier = a.carrier GROUP BY a.name ORDER BY a.name", True),
        ("top-N", "SELECT carrier, flight, dep_delay FROM flights WHERE dep_delay IS NOT NULL ORDER BY dep_delay DESC, carrier, flight LIMIT 10", True),
        ("window", "SELECT carrier, flight, arr_delay, r FROM (SELECT carrier, flight, arr_delay, rank() OVER (PARTITION BY carrier ORDER BY arr_delay DESC NULLS LAST, flight, time_hour) AS r FROM flights) t WHERE r <= 2 ORDER BY carrier, r", False),
        ("NULLs", "SELECT count(*) - count(dep_time) AS cancelled, count(*) - count(arr_delay) AS no_arrival, count(*) - count(tailnum) AS no_tail FROM flights", False),
        ("timestamps", "SELECT min(time_hour) AS first, max(time_hour) AS last, count(DISTINCT time_hour) AS hours FROM flights", False),
    ]),
}


def questions(data):
    """(dimension name, dimension key, questions) of a data set."""
    if data not in DATA_SETS:
        sys.exit(f"DATA {data}: use wide or flights")
    return DATA_SETS[data]
