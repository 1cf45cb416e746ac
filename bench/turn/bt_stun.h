/* bt_stun.h: the little STUN/TURN client the TURN benchmark tools need (turn_load,
 * turn_allocs): build a request with long-term-credential MESSAGE-INTEGRITY
 * (RFC 8489 §9.2, §14.5), read the response fields a client acts on, addresses and
 * timing. Written independently of relay/stun on purpose: the tools also drive coturn,
 * and a shared codec would hide a shared bug.
 *
 * What it does not: verify response integrity, FINGERPRINT, anything beyond UDP.
 * Threading: no shared state. */
#ifndef BT_STUN_H
#define BT_STUN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BT_METHOD_BINDING 0x001
#define BT_METHOD_ALLOCATE 0x003
#define BT_METHOD_REFRESH 0x004
#define BT_METHOD_CHANNEL_BIND 0x009

#define BT_CLASS_REQUEST 0
#define BT_CLASS_SUCCESS 2
#define BT_CLASS_ERROR 3

typedef struct bt_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} bt_addr_t;

/* Parses "1.2.3.4:5" or "[::1]:5". Returns 0 or -1. */
int bt_addr_parse(const char *s, bt_addr_t *out);
/* Formats into buf ("ip:port"). */
const char *bt_addr_str(const bt_addr_t *a, char *buf, size_t cap);

/* Long-term credentials: key = MD5(user:realm:pass), RFC 8489 §9.2.2. */
typedef struct bt_cred {
    char user[256];
    char realm[128];
    uint8_t nonce[256];
    size_t nonce_len;
    uint8_t key[16];
    bool have_key;          /* realm and nonce known, key computed */
} bt_cred_t;

/* Computes cred->key from user, realm (already set) and pass. */
void bt_cred_key(bt_cred_t *cred, const char *pass);

typedef struct bt_msg {
    uint8_t buf[1024];
    size_t len;
} bt_msg_t;

/* Starts a request of method with a random transaction id (copied to tid if non-NULL). */
void bt_req_init(bt_msg_t *m, uint16_t method, uint8_t tid[12]);
void bt_add_attr(bt_msg_t *m, uint16_t type, const void *val, size_t len);
void bt_add_u32(bt_msg_t *m, uint16_t type, uint32_t v);
void bt_add_xor_addr(bt_msg_t *m, uint16_t type, const bt_addr_t *a);
/* Adds USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (must be last but FINGERPRINT). */
void bt_add_auth(bt_msg_t *m, const bt_cred_t *cred);

/* A response as the tools see it. */
typedef struct bt_resp {
    uint16_t method;
    uint8_t cls;
    uint8_t tid[12];
    int error;              /* ERROR-CODE, 0 when absent */
    const uint8_t *realm, *nonce;
    size_t realm_len, nonce_len;
    bool has_relayed;
    bt_addr_t relayed;      /* XOR-RELAYED-ADDRESS */
} bt_resp_t;

/* Parses a datagram. Returns 0, or -1 when it is not a well-formed STUN message. */
int bt_parse(const uint8_t *p, size_t n, bt_resp_t *out);
/* Copies REALM and NONCE from a 401/438 into cred and computes the key. */
int bt_cred_from_challenge(bt_cred_t *cred, const bt_resp_t *r, const char *pass);

uint64_t bt_now_ns(void);
/* Sets a socket's receive and send buffers (best effort). */
void bt_sockbufs(int fd, int bytes);

#endif
