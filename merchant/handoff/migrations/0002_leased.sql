-- Events emitted with EmitClaimedMany get no delivery job up front: the
-- caller attempts them at once under a lease, and Sweep enqueues the job of
-- an event whose lease ran out with no outcome recorded (the process that
-- held it stopped). This index holds only such leased pending events.
CREATE INDEX handoff_events_leased ON handoff_events (state, lease_until) WHERE state = 'pending' AND lease_until > 0;
