// Types of realtime.js, the browser client of realtime-mq (docs/clients.md has the semantics,
// docs/protocol.md the frames).

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";
export type Listen = "broadcast" | "presence";

export interface RealtimeOptions {
  /** Development mode (no JWT key on the gateway): sent as ?user_id=. */
  userId?: string;
  /** A JWT, sent as ?token= (browsers cannot set headers on a WebSocket). */
  token?: string;
  /** A fresh JWT: called on token_expired (then sent in a `refresh` frame) and before each
   * reconnect; a falsy answer keeps the current token. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Reconnect backoff in ms: the n-th retry waits between half and all of
   * min(maxDelay, minDelay * 2^n). Defaults 250 and 10000. */
  minDelay?: number;
  maxDelay?: number;
}

export interface SubscribeOptions {
  /** What to receive; default both. */
  listen?: Listen[];
  /** Recover missed broadcasts with `since` after a reconnect (history channels); default true. */
  recover?: boolean;
  /** On the first subscribe, replay the last N broadcasts (history channels). */
  history?: number;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface Broadcast {
  type: "broadcast";
  channel: string;
  event: string;
  payload: unknown;
  /** Absent when the event came from the HTTP API. */
  user_id?: string;
  /** Unix ms, set when published. */
  ts: number;
  /** History channels only. */
  offset?: number;
  epoch?: string;
}

export interface Member {
  meta: Record<string, unknown>;
  /** Unix seconds; 0 when unknown. */
  updated_at: number;
}

export interface PresenceUser {
  user_id: string;
  meta?: Record<string, unknown>;
  updated_at?: number;
}

export interface PresenceEvent {
  type: "presence_join" | "presence_update" | "presence_leave";
  channel: string;
  user_id: string;
  meta?: Record<string, unknown>;
  updated_at?: number;
  ts?: number;
  seq?: number;
}

export interface PresenceSync {
  type: "presence_sync";
  channel: string;
  users: PresenceUser[];
  version?: number;
  chunk?: number;
  chunks?: number;
}

export interface RecoveredInfo {
  /** false: the missed broadcasts cannot all be replayed and none was: reload the state. */
  recovered: boolean;
  offset: number;
  epoch: string;
}

export interface Ack {
  type: "ack";
  ref: number;
  /** After a broadcast on a history channel: where it was stored. */
  offset?: number;
  epoch?: string;
}

export interface HistoryPage {
  type: "history";
  channel: string;
  offset: number;
  epoch: string;
  first: number;
  publications: Array<{ offset: number; event: string; payload: unknown; user_id?: string; ts?: number }>;
  next: number | null;
  ref: number;
}

/** Any frame, as the "frame" event hands it on. */
export type Frame = { type: string; [field: string]: unknown };

/** An error: an error frame (`code` is its code), a refused upgrade (`code` "refused" with
 * the HTTP `status`), a lost connection (`code` "connection_lost" with `closeCode`), a
 * server disconnect that stops the client ("disconnected_by_server", `closeCode`), a call
 * that the connection's loss left unanswered (`code` "disconnected"). */
export declare class RealtimeError extends Error {
  code: string;
  status?: number;
  closeCode?: number;
  reason?: string;
  channel?: string;
  frame?: Frame;
}

type Off = () => void;

export declare class Subscription {
  readonly channel: string;
  readonly listen: Listen[];
  /** Resolves on the subscribe's ack (the first one, or the first after a reconnect). */
  readonly ready: Promise<Subscription>;
  /** user_id -> member, exact from presence_sync, events and their versions. */
  readonly members: Map<string, Member>;
  /** The presence version the members are exact at. */
  readonly version: number | null;
  /** The last broadcast position received on a history channel. */
  readonly position: Position | null;
  /** false once unsubscribed (by the app or the server API). */
  readonly active: boolean;

  on(event: "broadcast", handler: (message: Broadcast) => void): Off;
  on(event: "presence", handler: (event: PresenceEvent | PresenceSync) => void): Off;
  on(event: "members", handler: (members: Map<string, Member>) => void): Off;
  on(event: "recovered", handler: (info: RecoveredInfo) => void): Off;
  on(event: "error", handler: (error: RealtimeError) => void): Off;
  on(event: "unsubscribed", handler: (error: RealtimeError) => void): Off;
  off(event: string, handler: (...args: any[]) => void): void;

  /** Rejects with code "disconnected" while not connected. */
  publish(event: string, payload?: unknown): Promise<Ack>;
  /** Joins presence (or updates the meta); kept across reconnects. */
  track(meta?: Record<string, unknown>): Promise<Ack>;
  untrack(): Promise<void>;
  history(options?: { since?: number; limit?: number }): Promise<HistoryPage>;
  unsubscribe(): Promise<void>;
}

export declare class Realtime {
  /** url: "http://host:8080" (a base), "ws://host:8080/ws", or a path such as "/ws". */
  constructor(url: string, options?: RealtimeOptions);
  readonly state: ConnectionState;
  readonly subscriptions: Map<string, Subscription>;

  on(event: "state", handler: (state: ConnectionState) => void): Off;
  on(event: "error", handler: (error: RealtimeError) => void): Off;
  on(event: "frame", handler: (frame: Frame, direction: "in" | "out") => void): Off;
  off(event: string, handler: (...args: any[]) => void): void;

  /** Resolves when open; rejects when the upgrade is refused (400, 401 after one fresh
   * token, 403: `status` says which) or close() comes first. Other failures are retried. */
  connect(): Promise<Realtime>;
  /** One subscription per channel: a second call returns the first. */
  subscribe(channel: string, options?: SubscribeOptions): Subscription;
  /** No reconnect after this. */
  close(): void;
}

export default Realtime;
