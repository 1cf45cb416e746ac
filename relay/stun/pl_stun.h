/* pl_stun.h: the pure STUN/TURN codec (RFC 8489 STUN, RFC 8656 TURN, RFC 6062 TURN-TCP).
 *
 * What it does: recognizes STUN messages and ChannelData frames, frames them on streams,
 * parses a STUN message in one pass into an index of attribute offsets (no copy),
 * decodes the attributes a STUN/TURN server needs, builds messages into a caller buffer
 * (XOR addresses, ERROR-CODE, MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT),
 * derives long-term keys and USERHASH, mints and checks TURN REST API credentials, and
 * makes and checks stateless nonces.
 *
 * What it does not: no I/O, no logging, no timers, no transaction or allocation state,
 * no SASLprep/OpaqueString: usernames, realms and passwords are taken as the UTF-8 bytes
 * given (as coturn does), which is the identity for the ASCII credentials TURN REST
 * issues. The parse/build path never allocates; only the HMAC/digest helpers call
 * OpenSSL, which allocates internally (3 small mallocs per HMAC, about 0.3 us for a
 * 100-byte message on the dev box).
 *
 * Threading: every function is reentrant and thread-safe. The only shared state is the
 * set of OpenSSL digests fetched once per process (pthread_once) and never changed.
 *
 * Errors: functions return 0 (or a length) on success and a negative code otherwise:
 * PL_EPARSE for malformed input, PL_ELIMIT when a caller buffer is too small,
 * -ENOENT when an attribute is absent, -EBADMSG when a MAC or FINGERPRINT does not
 * match, PL_ECRYPTO when OpenSSL fails. Protocol outcomes (which STUN error to send)
 * are the caller's decision. */
#ifndef PL_STUN_H
#define PL_STUN_H

#include "core/pl_common.h"
#include "core/pl_net.h"

/* ------------------------------------------------------------------------------------
 * Constants
 * ---------------------------------------------------------------------------------- */

#define PL_STUN_HEADER_LEN 20u
#define PL_STUN_MAGIC_COOKIE 0x2112A442u
#define PL_STUN_TID_LEN 12u
/* Largest STUN message: 16-bit length field plus the header (RFC 8489 §5). */
#define PL_STUN_MAX_MSG_LEN (PL_STUN_HEADER_LEN + 0xFFFFu)
/* Attributes indexed per message; a message with more is malformed (a DoS bound). */
#define PL_STUN_MAX_ATTRS 64
#define PL_STUN_CHANDATA_HEADER_LEN 4u
#define PL_STUN_FINGERPRINT_XOR 0x5354554Eu

/* Message classes (RFC 8489 §5). */
enum {
    PL_STUN_CLASS_REQUEST = 0,
    PL_STUN_CLASS_INDICATION = 1,
    PL_STUN_CLASS_SUCCESS = 2,
    PL_STUN_CLASS_ERROR = 3,
};

/* Methods (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1). */
enum {
    PL_STUN_METHOD_BINDING = 0x001,
    PL_STUN_METHOD_ALLOCATE = 0x003,
    PL_STUN_METHOD_REFRESH = 0x004,
    PL_STUN_METHOD_SEND = 0x006,
    PL_STUN_METHOD_DATA = 0x007,
    PL_STUN_METHOD_CREATE_PERMISSION = 0x008,
    PL_STUN_METHOD_CHANNEL_BIND = 0x009,
    PL_STUN_METHOD_CONNECT = 0x00A,
    PL_STUN_METHOD_CONNECTION_BIND = 0x00B,
    PL_STUN_METHOD_CONNECTION_ATTEMPT = 0x00C,
};

/* Attribute types. Below 0x8000 comprehension-required, above comprehension-optional
 * (RFC 8489 §14, §18.3; RFC 8656 §18; RFC 6062 §6.2; RFC 8445 §16.1). */
enum {
    PL_STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    PL_STUN_ATTR_USERNAME = 0x0006,
    PL_STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    PL_STUN_ATTR_ERROR_CODE = 0x0009,
    PL_STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    PL_STUN_ATTR_CHANNEL_NUMBER = 0x000C,
    PL_STUN_ATTR_LIFETIME = 0x000D,
    PL_STUN_ATTR_XOR_PEER_ADDRESS = 0x0012,
    PL_STUN_ATTR_DATA = 0x0013,
    PL_STUN_ATTR_REALM = 0x0014,
    PL_STUN_ATTR_NONCE = 0x0015,
    PL_STUN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,
    PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017,
    PL_STUN_ATTR_EVEN_PORT = 0x0018,
    PL_STUN_ATTR_REQUESTED_TRANSPORT = 0x0019,
    PL_STUN_ATTR_DONT_FRAGMENT = 0x001A,
    PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    PL_STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
    PL_STUN_ATTR_USERHASH = 0x001E,
    PL_STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    PL_STUN_ATTR_RESERVATION_TOKEN = 0x0022,
    PL_STUN_ATTR_PRIORITY = 0x0024,
    PL_STUN_ATTR_USE_CANDIDATE = 0x0025,
    PL_STUN_ATTR_CONNECTION_ID = 0x002A,
    PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000,
    PL_STUN_ATTR_ADDRESS_ERROR_CODE = 0x8001,
    PL_STUN_ATTR_PASSWORD_ALGORITHMS = 0x8002,
    PL_STUN_ATTR_ALTERNATE_DOMAIN = 0x8003,
    PL_STUN_ATTR_ICMP = 0x8004,
    PL_STUN_ATTR_SOFTWARE = 0x8022,
    PL_STUN_ATTR_ALTERNATE_SERVER = 0x8023,
    PL_STUN_ATTR_FINGERPRINT = 0x8028,
    PL_STUN_ATTR_ICE_CONTROLLED = 0x8029,
    PL_STUN_ATTR_ICE_CONTROLLING = 0x802A,
};

/* Address family codes inside address attributes and REQUESTED-ADDRESS-FAMILY. */
enum { PL_STUN_FAMILY_IPV4 = 0x01, PL_STUN_FAMILY_IPV6 = 0x02 };

/* REQUESTED-TRANSPORT protocol numbers (RFC 8656 §18.7, RFC 6062 §6.1). */
enum { PL_STUN_TRANSPORT_TCP = 6, PL_STUN_TRANSPORT_UDP = 17 };

/* PASSWORD-ALGORITHM numbers (RFC 8489 §18.5). */
enum { PL_STUN_PWALG_MD5 = 0x0001, PL_STUN_PWALG_SHA256 = 0x0002 };

/* Channel numbers a client may bind (RFC 8656 §12): 0x4000-0x4FFF. 0x5000-0x7FFF are
 * reserved and, like everything else, never a valid ChannelData frame. */
#define PL_STUN_CHANNEL_MIN 0x4000u
#define PL_STUN_CHANNEL_MAX 0x4FFFu

/* ------------------------------------------------------------------------------------
 * Demultiplexing and framing (no allocation, a few instructions each)
 * ---------------------------------------------------------------------------------- */

typedef enum pl_stun_kind {
    PL_STUN_KIND_OTHER = 0,     /* neither: drop, or hand to another protocol */
    PL_STUN_KIND_STUN = 1,      /* first two bits 00 and the magic cookie */
    PL_STUN_KIND_CHANNEL = 2,   /* ChannelData with a channel in 0x4000-0x4FFF */
} pl_stun_kind_t;

static inline uint16_t pl_stun_rd16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t pl_stun_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline bool pl_stun_channel_valid(uint32_t ch)
{
    return ch >= PL_STUN_CHANNEL_MIN && ch <= PL_STUN_CHANNEL_MAX;
}

/* Classifies a datagram by its first bytes (RFC 8656 §12: the first two bits tell
 * STUN (00) from ChannelData (01); RFC 7983 puts DTLS/RTP elsewhere). Does not check
 * lengths beyond the header: pl_stun_parse / pl_stun_chandata_parse do. */
static inline pl_stun_kind_t pl_stun_classify(const uint8_t *p, size_t n)
{
    if (n >= PL_STUN_HEADER_LEN && (p[0] & 0xC0) == 0 &&
        pl_stun_rd32(p + 4) == PL_STUN_MAGIC_COOKIE)
        return PL_STUN_KIND_STUN;
    if (n >= PL_STUN_CHANDATA_HEADER_LEN && (p[0] & 0xF0) == 0x40)
        return PL_STUN_KIND_CHANNEL;
    return PL_STUN_KIND_OTHER;
}

/* A parsed ChannelData message; data points into the caller's buffer. */
typedef struct pl_stun_chandata {
    uint16_t channel;       /* 0x4000-0x4FFF */
    uint16_t len;           /* application data length, without padding */
    const uint8_t *data;    /* borrowed: valid while the buffer is */
} pl_stun_chandata_t;

/* Parses a ChannelData message whose channel number lies in [PL_STUN_CHANNEL_MIN,
 * max_channel]: the shared body of pl_stun_chandata_parse and of servers that accept
 * RFC 5766's wider range (max_channel 0x7FFF). Returns 0 or PL_EPARSE. */
static inline int pl_stun_chandata_parse_upto(const uint8_t *p, size_t n, uint16_t max_channel,
                                              pl_stun_chandata_t *out)
{
    if (n < PL_STUN_CHANDATA_HEADER_LEN)
        return PL_EPARSE;
    uint16_t ch = pl_stun_rd16(p), len = pl_stun_rd16(p + 2);
    if (ch < PL_STUN_CHANNEL_MIN || ch > max_channel ||
        (size_t)len + PL_STUN_CHANDATA_HEADER_LEN > n)
        return PL_EPARSE;
    out->channel = ch;
    out->len = len;
    out->data = p + PL_STUN_CHANDATA_HEADER_LEN;
    return 0;
}

/* Parses a ChannelData message (RFC 8656 §12.4) from a datagram or a stream frame.
 * Trailing bytes (padding, RFC 8656 §12.5) are allowed. Returns 0, or PL_EPARSE for
 * a short header, a channel outside 0x4000-0x4FFF or a length beyond the buffer. */
static inline int pl_stun_chandata_parse(const uint8_t *p, size_t n, pl_stun_chandata_t *out)
{
    return pl_stun_chandata_parse_upto(p, n, PL_STUN_CHANNEL_MAX, out);
}

/* Writes a ChannelData header for a channel the caller has already checked, in front
 * of data_len bytes at buf + 4, plus zero padding to a multiple of 4 when stream is
 * true: the shared body of pl_stun_chandata_frame and of servers with their own channel
 * range. Returns the frame length, or PL_EPARSE for data_len > 65535, or PL_ELIMIT
 * when the padded frame does not fit in cap. */
static inline int pl_stun_chandata_write(uint8_t *buf, size_t cap, uint16_t channel,
                                         size_t data_len, bool stream)
{
    if (data_len > 0xFFFF)
        return PL_EPARSE;
    size_t total = PL_STUN_CHANDATA_HEADER_LEN + data_len;
    size_t framed = stream ? (total + 3) & ~(size_t)3 : total;
    if (framed > cap)
        return PL_ELIMIT;
    buf[0] = (uint8_t)(channel >> 8);
    buf[1] = (uint8_t)channel;
    buf[2] = (uint8_t)(data_len >> 8);
    buf[3] = (uint8_t)data_len;
    for (size_t i = total; i < framed; i++)
        buf[i] = 0;
    return (int)framed;
}

/* Frames a ChannelData message in place for the zero-copy relay path: the caller has
 * already put data_len bytes of application data at buf + 4; this writes the 4-byte
 * header in front and, when stream is true (TCP/TLS), zero padding up to a multiple
 * of 4 (RFC 8656 §12.5; over UDP padding is optional and omitted). Returns the frame
 * length to send, or PL_EPARSE for an invalid channel / data_len > 65535, or PL_ELIMIT
 * when the padded frame does not fit in cap. */
static inline int pl_stun_chandata_frame(uint8_t *buf, size_t cap, uint16_t channel,
                                         size_t data_len, bool stream)
{
    if (!pl_stun_channel_valid(channel))
        return PL_EPARSE;
    return pl_stun_chandata_write(buf, cap, channel, data_len, stream);
}

/* Stream framing (TCP/TLS, RFC 8489 §6.2.2, RFC 8656 §12.5): given the bytes received
 * so far, returns the length of the first complete frame (STUN: 20 + length;
 * ChannelData: 4 + length rounded up to 4), 0 when more bytes are needed, or PL_EPARSE
 * when the bytes cannot start a STUN or ChannelData frame (bad first bits, reserved
 * channel 0x5000-0x7FFF, bad magic cookie, STUN length not a multiple of 4): the
 * caller should close the connection. Errors are reported as soon as the bytes that
 * show them have arrived. The result is at most PL_STUN_MAX_MSG_LEN. */
int pl_stun_frame_len(const uint8_t *p, size_t n);

/* ------------------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------------------- */

/* One indexed attribute. off is the offset of the value (not the 4-byte attribute
 * header) from the start of the message; len is the value length without padding. */
typedef struct pl_stun_attr {
    uint16_t type;
    uint16_t len;
    uint32_t off;
} pl_stun_attr_t;

/* A parsed STUN message: a view over the caller's buffer, which must stay valid and
 * unchanged while the struct is used. 544 bytes on LP64: fine on the stack. */
typedef struct pl_stun_msg {
    const uint8_t *buf;     /* borrowed: the message bytes given to pl_stun_parse */
    size_t len;             /* message length including the 20-byte header */
    uint16_t type;          /* raw 14-bit message type */
    uint16_t method;        /* PL_STUN_METHOD_* (12 bits) */
    uint8_t cls;            /* PL_STUN_CLASS_* */
    bool header_ok;         /* header valid: method, cls and the transaction id can be
                             * used to answer 400 even when pl_stun_parse failed */
    uint16_t bad_attr;      /* when attributes were malformed: the offending type */
    int16_t mi_idx;         /* index in attrs of MESSAGE-INTEGRITY, or -1 */
    int16_t mi256_idx;      /* index of MESSAGE-INTEGRITY-SHA256, or -1 */
    int16_t fp_idx;         /* index of FINGERPRINT, or -1 */
    uint16_t n_attrs;       /* attributes indexed (at most PL_STUN_MAX_ATTRS) */
    pl_stun_attr_t attrs[PL_STUN_MAX_ATTRS];
} pl_stun_msg_t;

/* Parses a whole STUN message (one UDP datagram, or one frame from pl_stun_frame_len)
 * in a single pass. Checks (RFC 8489 §6.3): first two bits 00, magic cookie, length a
 * multiple of 4 and exactly len - 20, every attribute inside the message, at most
 * PL_STUN_MAX_ATTRS attributes, and the length/shape of every attribute this codec
 * knows (address families, LIFETIME 4 bytes, MESSAGE-INTEGRITY 20 bytes, ...).
 * Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
 * FINGERPRINT, and after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are skipped
 * and not indexed (RFC 8489 §14.5, §14.6); any attribute after FINGERPRINT makes the
 * message malformed (§14.7). FINGERPRINT and integrity values are not verified here:
 * see pl_stun_check_fingerprint and pl_stun_check_integrity*.
 * Returns 0 or PL_EPARSE. On PL_EPARSE, m->header_ok tells whether the header was
 * valid (then the message is STUN with bad attributes: answer a request with 400;
 * bad_attr names the attribute) or not (not STUN: drop silently). Never reads outside
 * buf[0..len). m->buf is set even on failure. */
int pl_stun_parse(pl_stun_msg_t *m, const uint8_t *buf, size_t len);

static inline const uint8_t *pl_stun_msg_tid(const pl_stun_msg_t *m)
{
    return m->buf + 8;
}

/* The encoded message type for a method and class (RFC 8489 §5 bit interleaving),
 * and the reverse. */
static inline uint16_t pl_stun_type(uint16_t method, uint8_t cls)
{
    return (uint16_t)((method & 0x000F) | ((method & 0x0070) << 1) |
                      ((method & 0x0F80) << 2) | ((cls & 1u) << 4) | ((cls & 2u) << 7));
}
static inline uint16_t pl_stun_type_method(uint16_t type)
{
    return (uint16_t)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
}
static inline uint8_t pl_stun_type_class(uint16_t type)
{
    return (uint8_t)(((type >> 4) & 1u) | ((type >> 7) & 2u));
}

/* Index of the first attribute of the given type at index >= from, or -1. Use it to
 * walk repeated attributes (XOR-PEER-ADDRESS):
 *   for (int i = pl_stun_find(m, T, 0); i >= 0; i = pl_stun_find(m, T, i + 1)) ... */
int pl_stun_find(const pl_stun_msg_t *m, uint16_t type, int from);

static inline bool pl_stun_has(const pl_stun_msg_t *m, uint16_t type)
{
    return pl_stun_find(m, type, 0) >= 0;
}

/* The value bytes of attrs[idx] (borrowed from m->buf). idx must be < m->n_attrs. */
static inline const uint8_t *pl_stun_attr_value(const pl_stun_msg_t *m, int idx)
{
    return m->buf + m->attrs[idx].off;
}

/* True when this codec knows the attribute type (the list in the enum above). */
bool pl_stun_attr_known(uint16_t type);

/* Collects the comprehension-required attributes (type < 0x8000) of m that this codec
 * does not know, for a 420 (Unknown Attribute) response with UNKNOWN-ATTRIBUTES
 * (RFC 8489 §6.3.1). Each type is listed once. Writes at most cap types into out and
 * returns how many there are in total (which may exceed cap). */
size_t pl_stun_unknown_required(const pl_stun_msg_t *m, uint16_t *out, size_t cap);

/* Typed accessors. Each reads the first attribute of its type (the shapes were
 * validated by pl_stun_parse) and returns 0, or -ENOENT when the attribute is absent. */

/* Decodes attrs[idx] as an address attribute into *out (sockaddr_in or sockaddr_in6,
 * port and address in network order). XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and
 * XOR-RELAYED-ADDRESS are un-XORed with the cookie and transaction id (RFC 8489
 * §14.2); MAPPED-ADDRESS and ALTERNATE-SERVER are plain (§14.1, §14.15). Returns 0, or
 * PL_EPARSE when attrs[idx] is not one of those types. */
int pl_stun_attr_addr(const pl_stun_msg_t *m, int idx, pl_sockaddr_t *out);
/* The first address attribute of the given type. */
int pl_stun_get_addr(const pl_stun_msg_t *m, uint16_t type, pl_sockaddr_t *out);

/* Raw value bytes: USERNAME, USERHASH (32 bytes), REALM, NONCE, SOFTWARE,
 * ALTERNATE-DOMAIN, DATA, RESERVATION-TOKEN (8 bytes), or any other type. Text is UTF-8,
 * not NUL-terminated. */
int pl_stun_get_bytes(const pl_stun_msg_t *m, uint16_t type, const uint8_t **val, size_t *len);

/* A 4-byte attribute as a host-order integer: LIFETIME (seconds), PRIORITY,
 * CONNECTION-ID. Returns PL_EPARSE for a type whose value is not 4 bytes. */
int pl_stun_get_u32(const pl_stun_msg_t *m, uint16_t type, uint32_t *out);
/* An 8-byte attribute: ICE-CONTROLLED, ICE-CONTROLLING (tie-breaker),
 * RESERVATION-TOKEN. Returns PL_EPARSE for a type whose value is not 8 bytes. */
int pl_stun_get_u64(const pl_stun_msg_t *m, uint16_t type, uint64_t *out);

/* CHANNEL-NUMBER's channel (RFC 8656 §18.1), as sent: the caller checks the range with
 * pl_stun_channel_valid (out of range is a 400 per RFC 8656 §11.2). */
int pl_stun_get_channel(const pl_stun_msg_t *m, uint16_t *channel);
/* REQUESTED-TRANSPORT's protocol number (RFC 8656 §18.7): 17 UDP, 6 TCP. */
int pl_stun_get_transport(const pl_stun_msg_t *m, uint8_t *protocol);
/* The family byte of REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656
 * §18.8, §18.9), as sent: values other than 1/2 are the server's 440 to give. */
int pl_stun_get_family(const pl_stun_msg_t *m, uint16_t type, uint8_t *family);
/* EVEN-PORT's R bit (RFC 8656 §18.6): reserve the next-higher port too. */
int pl_stun_get_even_port(const pl_stun_msg_t *m, bool *reserve_next);

/* ERROR-CODE (RFC 8489 §14.8): code = class * 100 + number (300-699); reason points
 * into the message (UTF-8, not NUL-terminated). */
typedef struct pl_stun_error {
    int code;
    const char *reason;
    size_t reason_len;
} pl_stun_error_t;
int pl_stun_get_error(const pl_stun_msg_t *m, pl_stun_error_t *out);
/* ADDRESS-ERROR-CODE (RFC 8656 §18.10): the family it is about and its error. */
int pl_stun_get_address_error(const pl_stun_msg_t *m, uint8_t *family, pl_stun_error_t *out);

/* ICMP (RFC 8656 §18.13), carried in Data indications. */
typedef struct pl_stun_icmp {
    uint8_t type;
    uint8_t code;
    uint32_t data;
} pl_stun_icmp_t;
int pl_stun_get_icmp(const pl_stun_msg_t *m, pl_stun_icmp_t *out);

/* The attribute types listed in UNKNOWN-ATTRIBUTES (RFC 8489 §14.13), in a 420
 * response. Writes at most cap into out; *n gets the total. */
int pl_stun_get_unknown_attrs(const pl_stun_msg_t *m, uint16_t *out, size_t cap, size_t *n);
/* The algorithm numbers in PASSWORD-ALGORITHMS (RFC 8489 §14.11), in order; parameters
 * are skipped. Writes at most cap into out; *n gets the total. */
int pl_stun_get_password_algorithms(const pl_stun_msg_t *m, uint16_t *out, size_t cap,
                                    size_t *n);
/* The algorithm number in PASSWORD-ALGORITHM (RFC 8489 §14.12). */
int pl_stun_get_password_algorithm(const pl_stun_msg_t *m, uint16_t *alg);

/* ------------------------------------------------------------------------------------
 * Building
 * ---------------------------------------------------------------------------------- */

/* A message under construction in a caller buffer. Errors are sticky: after the first
 * failure every later call is a no-op that returns the same error, so a caller can add
 * everything and check only pl_stun_build_finish. The length field is kept current
 * after every call. Fields are private except pad, which callers may set. */
typedef struct pl_stun_builder {
    uint8_t *buf;           /* borrowed caller buffer */
    size_t cap;
    size_t len;             /* bytes written, header included */
    int err;                /* 0, PL_ELIMIT (no room), PL_EPARSE (bad argument),
                             * PL_ESTATE (attribute after integrity/FINGERPRINT),
                             * PL_ECRYPTO */
    uint8_t stage;          /* 0 open, 1 after MI, 2 after MI-SHA256, 3 after FP */
    uint8_t pad;            /* byte used for attribute padding: 0 by default; RFC 8489
                             * §14 lets it be anything (the RFC 5769 vectors use 0x20) */
} pl_stun_builder_t;

/* Starts a message of the given type (pl_stun_type(method, cls)) with transaction id
 * tid (PL_STUN_TID_LEN bytes; the caller generates it with a CSPRNG for requests,
 * RFC 8489 §6). Returns 0 or PL_ELIMIT when cap < 20. */
int pl_stun_build_init(pl_stun_builder_t *b, uint8_t *buf, size_t cap, uint16_t type,
                       const uint8_t *tid);
/* Starts a response of class cls (SUCCESS or ERROR) to req: same method and
 * transaction id (RFC 8489 §6.3.1.1). buf must not overlap req->buf. */
int pl_stun_build_reply(pl_stun_builder_t *b, uint8_t *buf, size_t cap,
                        const pl_stun_msg_t *req, uint8_t cls);

/* Adds an attribute with the given value bytes and padding. len <= 65531. */
int pl_stun_add(pl_stun_builder_t *b, uint16_t type, const void *val, size_t len);
/* Adds a NUL-terminated string (SOFTWARE, REALM, NONCE, USERNAME, ...). */
int pl_stun_add_str(pl_stun_builder_t *b, uint16_t type, const char *s);
/* Adds a 4-byte (u32) / 8-byte (u64) big-endian value. For CHANNEL-NUMBER pass
 * channel << 16, for REQUESTED-TRANSPORT protocol << 24, for REQUESTED-ADDRESS-FAMILY
 * family << 24 (the RFFU bits are zero). */
int pl_stun_add_u32(pl_stun_builder_t *b, uint16_t type, uint32_t v);
int pl_stun_add_u64(pl_stun_builder_t *b, uint16_t type, uint64_t v);
/* Adds an address attribute. XOR-* types are XORed (RFC 8489 §14.2); an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d, from a dual-stack socket) is sent as IPv4. Returns
 * PL_EPARSE for a family other than AF_INET/AF_INET6 or a non-address type. */
int pl_stun_add_addr(pl_stun_builder_t *b, uint16_t type, const pl_sockaddr_t *addr);
/* Adds ERROR-CODE (RFC 8489 §14.8) with code 300-699 and reason (NULL: the standard
 * phrase from pl_stun_reason). */
int pl_stun_add_error(pl_stun_builder_t *b, int code, const char *reason);
/* Adds ADDRESS-ERROR-CODE (RFC 8656 §18.10) for the given family. */
int pl_stun_add_address_error(pl_stun_builder_t *b, uint8_t family, int code,
                              const char *reason);
/* Adds UNKNOWN-ATTRIBUTES listing n types (RFC 8489 §14.13). */
int pl_stun_add_unknown(pl_stun_builder_t *b, const uint16_t *types, size_t n);
/* Adds PASSWORD-ALGORITHMS listing n algorithms without parameters (RFC 8489 §14.11,
 * MD5 and SHA-256 take none). */
int pl_stun_add_password_algorithms(pl_stun_builder_t *b, const uint16_t *algs, size_t n);

/* Adds MESSAGE-INTEGRITY: HMAC-SHA1 with key over the message so far, with the length
 * field counting the attribute itself (RFC 8489 §14.5). key is the long-term key
 * (pl_stun_key_longterm) or, for short-term credentials, the password bytes (§9.1.1).
 * After it only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may be added. */
int pl_stun_add_integrity(pl_stun_builder_t *b, const uint8_t *key, size_t key_len);
/* Adds MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, 32 bytes (RFC 8489 §14.6). After it only
 * FINGERPRINT may be added. */
int pl_stun_add_integrity_sha256(pl_stun_builder_t *b, const uint8_t *key, size_t key_len);
/* Adds FINGERPRINT: CRC-32 of the message so far XOR 0x5354554e (RFC 8489 §14.7).
 * Nothing may follow. */
int pl_stun_add_fingerprint(pl_stun_builder_t *b);
/* Returns the message length (> 0) to send, or the first error. */
int pl_stun_build_finish(const pl_stun_builder_t *b);

/* The standard reason phrase for a STUN/TURN error code (RFC 8489 §14.8, RFC 8656 §19,
 * RFC 6062 §6.3): 300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447,
 * 486, 487, 500, 508. Other codes get a generic phrase for their class. Never NULL. */
const char *pl_stun_reason(int code);

/* ------------------------------------------------------------------------------------
 * Authentication (RFC 8489 §9)
 * ---------------------------------------------------------------------------------- */

/* Checks MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) of a parsed message against key,
 * in constant time. Returns 0 on match, -ENOENT when the attribute is absent, -EBADMSG
 * on mismatch, PL_ECRYPTO when OpenSSL fails. */
int pl_stun_check_integrity(const pl_stun_msg_t *m, const uint8_t *key, size_t key_len);
/* Same for MESSAGE-INTEGRITY-SHA256 (§14.6), including truncated values (16-32 bytes,
 * whose prefix is compared). */
int pl_stun_check_integrity_sha256(const pl_stun_msg_t *m, const uint8_t *key,
                                   size_t key_len);
/* The server's check (RFC 8489 §9.2.4): MESSAGE-INTEGRITY-SHA256 when present, else
 * MESSAGE-INTEGRITY. Same returns. */
int pl_stun_check_auth(const pl_stun_msg_t *m, const uint8_t *key, size_t key_len);
/* Checks FINGERPRINT (RFC 8489 §14.7). 0, -ENOENT when absent, -EBADMSG on mismatch. */
int pl_stun_check_fingerprint(const pl_stun_msg_t *m);
/* CRC-32 (ISO-HDLC, the zlib one) of len bytes, table-driven. */
uint32_t pl_stun_crc32(const uint8_t *p, size_t len);

/* Long-term credentials: username, realm, password as bytes (no SASLprep, see top). */
typedef struct pl_stun_cred {
    const void *username;
    size_t username_len;
    const void *realm;
    size_t realm_len;
    const void *password;
    size_t password_len;
} pl_stun_cred_t;

/* A derived long-term key: 16 bytes for MD5, 32 for SHA-256. */
typedef struct pl_stun_key {
    uint8_t bytes[32];
    size_t len;
} pl_stun_key_t;

/* key = MD5(username ":" realm ":" password) for PL_STUN_PWALG_MD5 (RFC 8489 §9.2.2,
 * §18.5.1.1) or SHA-256 of the same for PL_STUN_PWALG_SHA256 (§18.5.1.2). The key is
 * used with either MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256. Returns 0, PL_EPARSE
 * for another algorithm, PL_ECRYPTO. */
int pl_stun_key_longterm(const pl_stun_cred_t *c, uint16_t alg, pl_stun_key_t *out);
/* USERHASH = SHA-256(username ":" realm) (RFC 8489 §14.4); password is ignored. */
int pl_stun_userhash(const pl_stun_cred_t *c, uint8_t out[32]);

/* ------------------------------------------------------------------------------------
 * TURN REST API credentials (draft-uberti-behave-turn-rest-00, coturn use-auth-secret)
 *
 * username = "<expiry unix seconds>" or "<expiry>:<user>" (separator ':', coturn's
 * default), password = base64(HMAC-SHA1(secret, username)). The client sends the
 * username; the server recomputes the password from its secret(s), then the long-term
 * key, then checks MESSAGE-INTEGRITY.
 * ---------------------------------------------------------------------------------- */

#define PL_TURN_REST_SEP ':'
#define PL_TURN_REST_USER_MAX 255           /* longest <user> part minted */
#define PL_TURN_REST_USERNAME_MAX (20 + 1 + PL_TURN_REST_USER_MAX + 1)
#define PL_TURN_REST_PASSWORD_LEN 28        /* base64 of 20 bytes */

typedef struct pl_turn_rest_cred {
    char username[PL_TURN_REST_USERNAME_MAX];           /* NUL-terminated */
    char password[PL_TURN_REST_PASSWORD_LEN + 1];       /* NUL-terminated */
} pl_turn_rest_cred_t;

/* Mints credentials valid until now_s + ttl_s for user (NULL or "" for none). secret
 * is the shared secret string (coturn static-auth-secret). Returns 0, PL_ELIMIT when
 * user is longer than PL_TURN_REST_USER_MAX, PL_ECRYPTO. */
int pl_turn_rest_mint(const char *secret, const char *user, uint64_t now_s, uint64_t ttl_s,
                      pl_turn_rest_cred_t *out);
/* out = base64(HMAC-SHA1(secret, username)), NUL-terminated (29 bytes). Returns 0 or
 * PL_ECRYPTO. */
int pl_turn_rest_password(const char *secret, const void *username, size_t username_len,
                          char out[PL_TURN_REST_PASSWORD_LEN + 1]);
/* Parses the leading expiry of a REST username: 1-19 decimal digits, then the end or
 * ':'. Returns 0 or PL_EPARSE (empty, non-digit, overflow, junk after the digits). */
int pl_turn_rest_expiry(const void *username, size_t username_len, uint64_t *expiry_s);
/* Server-side check of a request signed with REST credentials: reads USERNAME and
 * REALM, rejects an expired username, then for each of n_secrets secrets (rotation:
 * current first) derives password and long-term key (MD5, or SHA-256 when the request
 * carries PASSWORD-ALGORITHM SHA-256) and checks the integrity with pl_stun_check_auth.
 * Returns the index of the matching secret and stores its key in *key (to sign the
 * response); or -ENOENT (no USERNAME, REALM or integrity attribute), PL_EPARSE (not a
 * REST username, unknown algorithm), -EKEYEXPIRED (expiry < now_s), -EBADMSG (no
 * secret matches), PL_ECRYPTO. */
int pl_turn_rest_check(const pl_stun_msg_t *m, const char *const *secrets, size_t n_secrets,
                       uint64_t now_s, pl_stun_key_t *key);

/* ------------------------------------------------------------------------------------
 * Stateless nonces (RFC 8489 §9.2.1 nonce cookie, §9.2.4 stale nonces)
 *
 * nonce = "obMatJos2" + base64(24 security feature bits)      (the 13-char cookie)
 *       + 8 hex digits of the issue time (unix seconds, mod 2^32)
 *       + base64(first 15 bytes of HMAC-SHA256(secret, cookie | time | client IP)).
 * 41 ASCII characters, all allowed in NONCE (qdtext). Bound to the client's IP (not the
 * port: a TCP reconnect keeps it). The server checks a nonce without state.
 * ---------------------------------------------------------------------------------- */

#define PL_STUN_NONCE_LEN 41
/* Security feature bits of the nonce cookie, numbered from the least significant bit
 * of the 24-bit set as in the verified RFC 8489 errata 6290 / 6268 (Appendix B.1 uses
 * "AAAC" for username anonymity); the original §18.1 text numbered from the most
 * significant bit. */
#define PL_STUN_FEATURE_PASSWORD_ALGORITHMS 0x000001u
#define PL_STUN_FEATURE_USERNAME_ANONYMITY 0x000002u
/* A nonce stamped further than this in the future (clock skew across a fleet sharing
 * the secret) is invalid. */
#define PL_STUN_NONCE_MAX_SKEW_S 60u

typedef struct pl_stun_nonce_key {
    uint8_t secret[32];     /* server secret: random at start-up, or shared by a fleet */
    uint32_t features;      /* 24-bit security feature set to advertise (PL_STUN_FEATURE_*) */
    uint32_t lifetime_s;    /* nonce validity; older nonces are stale (438) */
} pl_stun_nonce_key_t;

typedef enum pl_stun_nonce_result {
    PL_STUN_NONCE_OK = 0,
    PL_STUN_NONCE_STALE = 1,    /* ours, for this client, but expired: answer 438 */
    PL_STUN_NONCE_INVALID = 2,  /* not ours, altered, or for another IP: answer 401 */
} pl_stun_nonce_result_t;

/* Writes a nonce for client (its IP is used; an IPv4-mapped IPv6 address counts as the
 * IPv4 one) issued at now_s into out (PL_STUN_NONCE_LEN chars plus a NUL). Returns
 * PL_STUN_NONCE_LEN, PL_EPARSE for a non-IP address, PL_ECRYPTO. */
int pl_stun_nonce_make(const pl_stun_nonce_key_t *k, uint64_t now_s,
                       const pl_sockaddr_t *client, char out[PL_STUN_NONCE_LEN + 1]);
/* Checks a NONCE value received from client at now_s, in constant time. */
pl_stun_nonce_result_t pl_stun_nonce_check(const pl_stun_nonce_key_t *k, const void *nonce,
                                           size_t len, uint64_t now_s,
                                           const pl_sockaddr_t *client);
/* The 24 feature bits of a nonce that starts with the nonce cookie, or -1 (no cookie,
 * or not base64). A client uses it for bid-down protection (RFC 8489 §9.2.5). */
int32_t pl_stun_nonce_features(const void *nonce, size_t len);

#endif
