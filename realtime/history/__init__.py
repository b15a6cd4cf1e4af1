"""Per-channel history: which channels keep it (:mod:`.channels`), the store protocol
(:mod:`.base`), and its two stores, in this process (:mod:`.memory`) and in Redis Streams
(:mod:`.redis`)."""
