-- Queue-delay statistics for `mtalens stats delays`: count, p50/p90/p99/max of the total delay and
-- of each of Postfix's four stages (before queue, in queue, connection set-up, transmission).
-- {group} is replaced by one whitelisted expression (see pipeline/stats.py); $since/$until bound it.

-- name: delays
SELECT {group} AS "key", count(*) AS count,
       quantile_cont(delay, 0.5) AS delay_p50, quantile_cont(delay, 0.9) AS delay_p90,
       quantile_cont(delay, 0.99) AS delay_p99, max(delay) AS delay_max,
       quantile_cont(delay_before_queue, 0.5) AS before_queue_p50,
       quantile_cont(delay_before_queue, 0.9) AS before_queue_p90,
       quantile_cont(delay_before_queue, 0.99) AS before_queue_p99,
       max(delay_before_queue) AS before_queue_max,
       quantile_cont(delay_in_queue, 0.5) AS in_queue_p50,
       quantile_cont(delay_in_queue, 0.9) AS in_queue_p90,
       quantile_cont(delay_in_queue, 0.99) AS in_queue_p99,
       max(delay_in_queue) AS in_queue_max,
       quantile_cont(delay_connect, 0.5) AS connect_p50,
       quantile_cont(delay_connect, 0.9) AS connect_p90,
       quantile_cont(delay_connect, 0.99) AS connect_p99,
       max(delay_connect) AS connect_max,
       quantile_cont(delay_transmit, 0.5) AS transmit_p50,
       quantile_cont(delay_transmit, 0.9) AS transmit_p90,
       quantile_cont(delay_transmit, 0.99) AS transmit_p99,
       max(delay_transmit) AS transmit_max
FROM deliveries
WHERE logged_at >= $since AND logged_at < $until AND delay IS NOT NULL AND {status_filter}
GROUP BY ALL ORDER BY count DESC, "key" LIMIT $top;
