/* turn_metrics.c: the parley_turn_* series. Registered once at module start; each
 * relay thread writes its own shard (pl_metrics.h), so counting is a plain add.
 *
 *   parley_turn_allocations{transport,family}        gauge: open relayed addresses
 *   parley_turn_allocations_created_total            counter
 *   parley_turn_relayed_packets_total{direction}     counter (client_to_peer, peer_to_client)
 *   parley_turn_relayed_bytes_total{direction}       counter (payload bytes)
 *   parley_turn_auth_failures_total{reason}          counter
 *   parley_turn_drops_total{reason}                  counter
 *   parley_turn_responses_total{code}                counter ("success" or the STUN code)
 *   parley_turn_allocation_lifetime_seconds          histogram, observed at deletion
 *   parley_turn_stream_connections{transport}        gauge: TCP/TLS client connections
 *   parley_turn_stream_accepts_total{transport}      counter
 *   parley_turn_stream_refused_total                 counter: max_unallocated_per_ip
 *   parley_turn_backpressure_pauses_total            counter: reads stopped, output full
 *   parley_turn_stream_handovers_total               counter: ConnectionBinds moved
 *   parley_turn_tcp_peer_connections                 gauge: RFC 6062 peer connections
 *
 * Threading: registration on the main thread before relay threads start. */
#include "relay/turn/turn_int.h"

#include <stdio.h>

const int pl_turn_codes[PL_TURN_N_CODES] = {
    0, 300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447, 486, 508,
};

const char *const pl_turn_drop_names[PL_TURN_DROP_N] = {
    "malformed", "not_stun", "no_allocation", "no_channel", "no_permission", "rate_limited", "bandwidth", "send_failed", "truncated",
    "bad_fingerprint", "unexpected", "client_backpressure", "relay_overflow",
};

const char *const pl_turn_authfail_names[PL_TURN_AUTH_N] = {
    "missing_attribute", "unknown_user", "bad_integrity", "stale_nonce", "expired",
    "wrong_realm", "bad_algorithm", "wrong_credentials",
};

size_t pl_turn_code_index(int code)
{
    for (size_t i = 0; i < PL_TURN_N_CODES; i++)
        if (pl_turn_codes[i] == code)
            return i;
    return 2;   /* an unexpected code is counted as a 400 (never emitted today) */
}

void pl_turn_metrics_register(pl_metrics_t *reg, pl_turn_metric_ids_t *ids)
{
    static const char *const tr[3] = {"udp", "tcp", "tls"};
    static const char *const fam[2] = {"ipv4", "ipv6"};
    static const char *const dir[2] = {"client_to_peer", "peer_to_client"};
    char labels[128];
    for (int t = 0; t < 3; t++)
        for (int f = 0; f < 2; f++) {
            snprintf(labels, sizeof labels, "transport=\"%s\",family=\"%s\"", tr[t], fam[f]);
            ids->allocs[t][f] = pl_metrics_gauge(reg, "parley_turn_allocations",
                "Relayed transport addresses open, by client transport and relayed family", labels);
        }
    ids->allocs_created = pl_metrics_counter(reg, "parley_turn_allocations_created_total",
                                             "Allocations created", NULL);
    for (int d = 0; d < 2; d++) {
        snprintf(labels, sizeof labels, "direction=\"%s\"", dir[d]);
        ids->pkts[d] = pl_metrics_counter(reg, "parley_turn_relayed_packets_total",
                                          "Datagrams relayed", labels);
        ids->bytes[d] = pl_metrics_counter(reg, "parley_turn_relayed_bytes_total",
                                           "Application bytes relayed", labels);
    }
    for (int i = 0; i < PL_TURN_AUTH_N; i++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"", pl_turn_authfail_names[i]);
        ids->authfail[i] = pl_metrics_counter(reg, "parley_turn_auth_failures_total",
                                              "Requests refused by authentication", labels);
    }
    for (int i = 0; i < PL_TURN_DROP_N; i++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"", pl_turn_drop_names[i]);
        ids->drops[i] = pl_metrics_counter(reg, "parley_turn_drops_total",
                                           "Packets dropped without a response", labels);
    }
    for (int i = 0; i < PL_TURN_N_CODES; i++) {
        if (pl_turn_codes[i] == 0)
            snprintf(labels, sizeof labels, "code=\"success\"");
        else
            snprintf(labels, sizeof labels, "code=\"%d\"", pl_turn_codes[i]);
        ids->responses[i] = pl_metrics_counter(reg, "parley_turn_responses_total",
                                               "STUN responses sent, by error code", labels);
    }
    static const double bounds[] = {1, 10, 60, 300, 600, 1800, 3600, 7200, 21600, 86400};
    ids->lifetime_hist = pl_metrics_histogram(reg, "parley_turn_allocation_lifetime_seconds",
                                              "Allocation age at deletion", NULL, bounds,
                                              PL_ARRAY_LEN(bounds));
    for (int t = 0; t < 2; t++) {
        snprintf(labels, sizeof labels, "transport=\"%s\"", tr[t + 1]);
        ids->streams[t] = pl_metrics_gauge(reg, "parley_turn_stream_connections",
            "TCP/TLS client connections open (control and RFC 6062 data)", labels);
        ids->stream_accepts[t] = pl_metrics_counter(reg, "parley_turn_stream_accepts_total",
            "TCP/TLS client connections accepted", labels);
    }
    ids->stream_refused = pl_metrics_counter(reg, "parley_turn_stream_refused_total",
        "TCP/TLS connections closed at accept: their source IP had max_unallocated_per_ip "
        "connections without an allocation", NULL);
    ids->stream_pauses = pl_metrics_counter(reg, "parley_turn_backpressure_pauses_total",
        "Times a full TCP/TLS output buffer stopped reading from the other side", NULL);
    ids->stream_handovers = pl_metrics_counter(reg, "parley_turn_stream_handovers_total",
        "RFC 6062 data connections passed to the relay thread owning their CONNECTION-ID", NULL);
    ids->tcp_peers = pl_metrics_gauge(reg, "parley_turn_tcp_peer_connections",
        "RFC 6062 peer data connections open", NULL);
}
