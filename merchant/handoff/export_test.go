package handoff

// SweepQuery is sweepQuery, for the plan test.
const SweepQuery = sweepQuery
