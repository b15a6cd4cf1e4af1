// Compiled by `npm run check` (tsc --noEmit) against realtime.d.ts: the API as the docs show it.
import Realtime, { RealtimeError, type Broadcast, type Member } from "./realtime.js";

async function example(): Promise<void> {
  const rt = new Realtime("http://127.0.0.1:8080", {
    userId: "alice",
    getToken: async () => "token",
    minDelay: 250,
    maxDelay: 10000,
  });
  rt.on("state", (state) => console.log(state.toUpperCase()));
  rt.on("error", (err: RealtimeError) => console.log(err.code, err.status));
  rt.on("frame", (frame, direction) => console.log(direction, frame.type));
  await rt.connect();
  const sub = rt.subscribe("room", { listen: ["broadcast", "presence"], recover: true });
  await sub.ready;
  sub.on("broadcast", (msg: Broadcast) => console.log(msg.payload, msg.offset ?? 0));
  sub.on("members", (members: Map<string, Member>) => console.log(members.size));
  sub.on("recovered", (info) => (info.recovered ? undefined : location.reload()));
  const ack = await sub.publish("chat", { text: "hi" });
  console.log(ack.offset);
  await sub.track({ name: "Alice" });
  await sub.untrack();
  const page = await sub.history({ since: 0, limit: 10 });
  console.log(page.publications.length, page.next);
  await sub.unsubscribe();
  rt.close();
}

void example;
