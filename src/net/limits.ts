/**
 * Every network limit in one place, each enforced by the code named beside it and tested past.
 * Values follow js-libp2p's doc/LIMITS.md, sized for a 2-core peer.
 */

/** Open connections at most (libp2p connection manager prunes beyond this). */
export const MAX_CONNECTIONS = 200
/** Inbound connections still in their handshake at once (connection manager). */
export const MAX_INCOMING_PENDING_CONNECTIONS = 16
/** Inbound connections accepted per second from one IP address (connection manager rate limiter). */
export const INBOUND_CONNECTIONS_PER_SECOND_PER_HOST = 20
/** Time an inbound connection may take to finish Noise + Yamux (connection manager). */
export const INBOUND_UPGRADE_TIMEOUT_MS = 5_000
/** Time a dial may take (connection manager). */
export const DIAL_TIMEOUT_MS = 10_000
/** Concurrent outbound dials (connection manager). */
export const MAX_PARALLEL_DIALS = 50

/** Streams a peer may open at once on one Yamux connection. */
export const MAX_INBOUND_STREAMS_PER_CONNECTION = 256
/** Largest Yamux frame we accept. */
export const MAX_YAMUX_MESSAGE_BYTES = 256 * 1024

/** Inbound streams per connection on the DHT protocol (kad-dht). */
export const DHT_MAX_INBOUND_STREAMS = 32
/** Outbound streams per connection on the DHT protocol (kad-dht). */
export const DHT_MAX_OUTBOUND_STREAMS = 64
/** Peers asked in parallel per DHT lookup path (Kademlia's alpha; kad-dht's default of 10 costs CPU for nothing at our size). */
export const DHT_ALPHA = 3
/** Disjoint paths per DHT lookup (S/Kademlia), so one lying peer cannot steer a lookup alone. */
export const DHT_DISJOINT_PATHS = 3
/** Largest DHT message: kad-dht reads through @libp2p/utils, whose read buffer stops at this size (the frame is refused once this much has arrived; a bare length prefix claiming more waits for the DHT timeout). */
export const DHT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

/** Largest gossip RPC frame we read from a peer (gossipsub maxInboundDataLength). */
export const GOSSIP_MAX_RPC_BYTES = 1024 * 1024
/** Largest payload we publish on a topic. */
export const GOSSIP_MAX_MESSAGE_BYTES = 512 * 1024
/** Bytes buffered for one slow gossip peer before its stream is dropped. */
export const GOSSIP_MAX_OUTBOUND_BUFFER_BYTES = 4 * 1024 * 1024
/**
 * Messages at least this large make GossipSub send IDONTWANT to its mesh peers (so they do not
 * forward us a copy). Below it the control message costs as much as the copy it saves.
 */
export const GOSSIP_IDONTWANT_MIN_BYTES = 16 * 1024
/** Longest topic name. */
export const GOSSIP_MAX_TOPIC_LENGTH = 256
/** Topics a peer may subscribe to (the gossip state we keep per peer is bounded by this). */
export const GOSSIP_MAX_SUBSCRIPTIONS_PER_RPC = 256

/** Ping streams per connection each way: our pings and libp2p's connection monitor share the protocol. */
export const PING_MAX_STREAMS = 4

/** Largest identify message (identify). */
export const IDENTIFY_MAX_MESSAGE_BYTES = 8 * 1024

/**
 * Largest frame of libp2p's small control protocols (relay hop/stop, AutoNAT, DCUtR; each reads
 * at most 8 KiB): the prefix guard refuses a length prefix longer than this needs.
 */
export const LIBP2P_CONTROL_MAX_MESSAGE_BYTES = 8 * 1024

/** Relay reservations a relaying peer holds for others (circuit relay server). */
export const RELAY_MAX_RESERVATIONS = 64
/** Relayed connections in progress through this peer at once (circuit relay server hop streams). */
export const RELAY_MAX_INBOUND_HOP_STREAMS = 64
/** Bytes one relayed connection may carry before the relay closes it. */
export const RELAY_MAX_BYTES_PER_CIRCUIT = 128n * 1024n * 1024n
/** Lifetime of one relayed connection. */
export const RELAY_MAX_CIRCUIT_DURATION_MS = 10 * 60_000

/** Our own request/response protocols: inbound and outbound streams per connection. */
export const PROTOCOL_MAX_INBOUND_STREAMS = 4
export const PROTOCOL_MAX_OUTBOUND_STREAMS = 4
/** Time one request/response exchange on our own protocols may take. */
export const PROTOCOL_TIMEOUT_MS = 5_000

/** Peers that must see us at an address none of our interfaces has before we take it that we are behind a NAT (reach). */
export const REACH_NAT_OBSERVATIONS = 2
/** Tries at a direct (WebRTC) connection to a peer we reach only through a relay (reach). */
export const UPGRADE_MAX_ATTEMPTS = 3
/** Time one direct-connection try may take, signalling and ICE included (reach). */
export const UPGRADE_TIMEOUT_MS = 15_000
/** Time a new WebRTC connection has to carry one ping before it counts as direct (reach). */
export const UPGRADE_VERIFY_TIMEOUT_MS = 10_000
/** Direct-connection upgrades in progress at once (reach). */
export const UPGRADE_MAX_CONCURRENT = 4
/** Peers whose direct path we remember having failed, so that dials to them take the relay at once (reach); the oldest is forgotten past this. */
export const UPGRADE_FAILED_PEERS_MAX = 1024
/** How long a failed direct path is remembered: until then dials to that peer skip its relayed WebRTC addresses (reach). */
export const UPGRADE_FAILED_MEMORY_MS = 10 * 60_000

/** Private addresses that share this many leading bits (IPv4) count as one LAN: a peer known at one is worth a direct dial (limited.ts). */
export const LAN_PREFIX_BITS_IPV4 = 16
/** The same for IPv6 (a /64 is one link). */
export const LAN_PREFIX_BITS_IPV6 = 64
/** Peers whose direct dial failed while we held them over a relay: dials of them take the relayed connection at once (limited.ts); the oldest is forgotten past this. */
export const DIRECT_DIAL_FAILED_PEERS_MAX = 1024
/** How long such a failed direct dial is remembered (limited.ts). */
export const DIRECT_DIAL_FAILED_MEMORY_MS = 60_000
/** How long a stream whose protocol does not run over a relay waits for a direct path (a hole punch) before DirectPathRequiredError (limited.ts). */
export const DIRECT_PATH_WAIT_MS = 10_000
/** Distinct witnesses (peers at distinct IP addresses) that must report the same observed address of ours before libp2p is told of it (reach). */
export const OBSERVED_ADDRESS_MIN_WITNESSES = 3
/** Observed addresses of ours held while they gather witnesses; the oldest is forgotten past this (reach). */
export const OBSERVED_ADDRESS_MAX_CLAIMS = 64
/** WebRTC connections between two peers at most; past it the extras are closed (webrtc-limits). */
export const WEBRTC_MAX_CONNECTIONS_PER_PEER = 1
/** WebRTC signalling streams one peer may run to us at once (each makes a native peer connection; webrtc-limits). */
export const WEBRTC_MAX_SIGNALING_PER_PEER = 2
