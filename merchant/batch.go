package merchant

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/merchant/handoff"
)

// Batched writes of the request path.
//
// Concurrent creates (newInstance of a fetched, non-pay-per-use order) and
// audit records are written by batches: each batch is one transaction of a
// few multi-row statements, so that concurrent requests share statements and
// one durable commit rather than running their own. On SQLite a batch runs as
// one function of the group committer (group.go); on PostgreSQL in a
// transaction of its own. One batch of each kind runs at a time: while it
// runs, the next one fills. With four at once on PostgreSQL, most batches
// held one request and creates were slower (docs/performance.md). When a batch's
// transaction fails as a whole, each of its requests runs alone on the
// unbatched path, so that one bad request never fails the others.
// docs/performance.md has the measurements.

// maxBatch is the most requests a batch holds.
const maxBatch = 128

func (m *Merchant) startBatchers() {
	m.lookups = db.NewBatcher(lookupWorkers(m.db), maxBatch, m.runLookups)
	m.creates = db.NewBatcher(1, maxBatch, m.runCreates)
	m.audits = db.NewBatcher(1, maxBatch, m.runAudits)
	m.deliveries = db.NewBatcher(1, maxBatch, m.runDeliveries)
}

func (m *Merchant) stopBatchers() {
	m.lookups.Close()
	m.creates.Close()
	m.deliveries.Close()
	m.audits.Close()
}

// lookupWorkers is how many batches of known-line checks run at once.
func lookupWorkers(d *db.DB) int {
	if d.Dialect == db.Postgres {
		return 2
	}
	return 1
}

// lookupItem is one create's check whether its order line is known (a
// retry answers from the store, without Query Order).
type lookupItem struct {
	key string // lineKey
	// When found: the line's instance, its phase, and the instance it is an
	// alias of (pay-per-use) with that one's phase: what the answer needs.
	id, phase, aliasOf, aliasPhase string
	err                            error // errNotFound, or the batch's failure
}

// runLookups checks a batch of order lines with one query, which also
// reads what the answer to a known line needs: each create made its own
// lookup before, and a retry a second read for its answer, a round trip
// each on PostgreSQL (docs/performance.md).
func (m *Merchant) runLookups(items []*lookupItem) {
	ctx, cancel := batchCtx()
	defer cancel()
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	ph, args := inList(keys, 1)
	found := make(map[string][4]string, len(items))
	err := func() error {
		rows, err := m.db.Query(ctx, `SELECT k.idem_key, i.instance_id, i.phase, i.alias_of, COALESCE(a.phase, '')
			FROM merchant_instance_keys k JOIN merchant_instances i ON i.instance_id = k.instance_id
			LEFT JOIN merchant_instances a ON i.alias_of <> '' AND a.instance_id = i.alias_of
			WHERE k.idem_key IN (`+ph+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var v [4]string
			if err := rows.Scan(&k, &v[0], &v[1], &v[2], &v[3]); err != nil {
				return err
			}
			found[k] = v
		}
		return rows.Err()
	}()
	for _, it := range items {
		it.id, it.phase, it.aliasOf, it.aliasPhase, it.err = "", "", "", "", nil
		switch v, ok := found[it.key]; {
		case err != nil:
			it.err = fmt.Errorf("lookup key: %w", err)
		case ok:
			it.id, it.phase, it.aliasOf, it.aliasPhase = v[0], v[1], v[2], v[3]
		default:
			it.err = errNotFound
		}
	}
}

// batchCtx bounds a batch's database work as createGrace bounds a request's.
func batchCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), createGrace)
}

// createItem is one create in a batch.
type createItem struct {
	ctx   context.Context // the request's, for the unbatched fallback
	in    CreateInput     // Order is set and not pay-per-use
	claim *nonceClaim     // the request's nonce when no write stored it yet
	res   CreateResult
	err   error
}

func (m *Merchant) runCreates(items []*createItem) {
	ctx, cancel := batchCtx()
	defer cancel()
	err := m.do(ctx, func(tx *db.Tx) error { return m.createBatchTx(ctx, tx, m.clock.Now(), items) })
	if err == nil {
		for _, it := range items {
			if it.err == nil && it.claim != nil {
				it.claim.stored = true
			}
		}
		return
	}
	m.log.Warn("batched create failed; its creates run one by one", "creates", len(items), "err", err)
	for _, it := range items {
		it.res, it.err = CreateResult{}, nil
		it.err = m.writeTx(it.ctx, func(tx *db.Tx) error {
			now := m.clock.Now()
			in := it.in
			in.DeliverAt, in.ClaimUntil = now.Add(m.cfg.Budget+time.Second), now.Add(m.deliver.Lease)
			var err error
			it.res, err = m.createTx(it.ctx, tx, now, in)
			return err
		})
	}
}

// createBatchTx is createTx for a batch of creates whose order is known and
// not pay-per-use (one idempotency key each: the order line), in a handful of
// multi-row statements:
//
//  1. the requests' nonces (a replay gets errReplay and does nothing else);
//  2. which proposed instance ids (the businessIds) are taken already;
//  3. the order line keys, claimed with ON CONFLICT DO NOTHING: a key
//     claimed by an earlier call (or by another request of the batch, or a
//     concurrent transaction of another replica, which PostgreSQL waits for)
//     makes the request a retry of the instance the key names;
//  4. the new instances, their instance.created events (claimed for the
//     inline delivery) and the events' jobs;
//  5. the instance and phase of every retry.
//
// It sets every item's result, and returns an error only when the batch as a
// whole cannot commit.
func (m *Merchant) createBatchTx(ctx context.Context, tx *db.Tx, now time.Time, items []*createItem) error {
	for _, it := range items {
		it.res, it.err = CreateResult{}, nil
	}
	if err := storeNonces(ctx, tx, now, items, func(it *createItem) *nonceClaim { return it.claim }, func(it *createItem) { it.err = errReplay }); err != nil {
		return err
	}
	live := make([]*createItem, 0, len(items))
	for _, it := range items {
		if it.err == nil {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return nil
	}

	// instanceId = the first call's businessId (the documented
	// recommendation), or a UUID if that id is taken.
	ids := make([]string, len(live))
	for i, it := range live {
		ids[i] = it.in.BusinessID
	}
	taken, err := existingIDs(ctx, tx, ids)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if id == "" || taken[id] || seen[id] {
			ids[i] = newUUID(m.rand)
		}
		seen[ids[i]] = true
	}

	// Claim the order line keys.
	rows := db.SizeClass(len(live))
	args := make([]any, 0, rows*3)
	for i := 0; i < rows; i++ {
		j := min(i, len(live)-1)
		args = append(args, lineKey(live[j].in.OrderID, live[j].in.OrderLineID), ids[j], now.UnixMilli())
	}
	claimed := make(map[string]string, len(live))
	if err := queryPairs(ctx, tx, `INSERT INTO merchant_instance_keys (idem_key, instance_id, created_at) VALUES `+db.Values(rows, 3, 1)+`
		ON CONFLICT (idem_key) DO NOTHING RETURNING idem_key, instance_id`, args, claimed); err != nil {
		return fmt.Errorf("create: claim keys: %w", err)
	}
	var winners, retries []int
	for i, it := range live {
		if claimed[lineKey(it.in.OrderID, it.in.OrderLineID)] == ids[i] {
			winners = append(winners, i)
		} else {
			retries = append(retries, i)
		}
	}

	if len(winners) > 0 {
		insts := make([]*Instance, len(winners))
		evs := make([]handoff.Event, len(winners))
		for k, i := range winners {
			in, o := live[i].in, live[i].in.Order
			inst := &Instance{ID: ids[i], OrderID: in.OrderID, OrderLineID: in.OrderLineID, BusinessID: in.BusinessID, TestFlag: in.TestFlag,
				Phase: PhaseProvisioning, Status: StatusNormal, ProductID: o.ProductID, SkuCode: o.SkuCode, ChargingMode: o.ChargingMode, Order: o.Raw}
			insts[k] = inst
			evs[k] = handoff.Event{Type: EventCreated, Subject: inst.ID, TestFlag: inst.TestFlag, Data: instanceData(inst, nil)}
		}
		if err := insertInstances(ctx, tx, now, insts); err != nil {
			return err
		}
		stored, err := handoff.EmitClaimedMany(ctx, tx, now, evs, now.Add(m.cfg.Budget+time.Second), now.Add(m.deliver.Lease))
		if err != nil {
			return err
		}
		for k, i := range winners {
			live[i].res = CreateResult{InstanceID: ids[i], Created: true, Phase: PhaseProvisioning, EventID: stored[k].ID, Event: stored[k]}
		}
	}

	if len(retries) > 0 {
		keys := make([]string, len(retries))
		for k, i := range retries {
			keys[k] = lineKey(live[i].in.OrderID, live[i].in.OrderLineID)
		}
		found, err := instancesOfKeys(ctx, tx, keys)
		if err != nil {
			return err
		}
		for k, i := range retries {
			f, ok := found[keys[k]]
			if !ok {
				return fmt.Errorf("create: key %s claimed but not visible", keys[k])
			}
			live[i].res = CreateResult{InstanceID: f[0], Phase: f[1]}
		}
	}
	return nil
}

// storeNonces inserts the nonces that claimOf returns (nil: none) in one
// statement; replay is called for every item whose nonce was stored before,
// or by an earlier item of the batch.
func storeNonces[T any](ctx context.Context, tx *db.Tx, now time.Time, items []T, claimOf func(T) *nonceClaim, replay func(T)) error {
	var nonces []string
	for _, it := range items {
		if c := claimOf(it); c != nil && !c.stored && c.nonce != "" {
			nonces = append(nonces, c.nonce)
		}
	}
	if len(nonces) == 0 {
		return nil
	}
	rows := db.SizeClass(len(nonces))
	args := make([]any, 0, rows*2)
	for i := 0; i < rows; i++ {
		args = append(args, nonces[min(i, len(nonces)-1)], now.UnixMilli())
	}
	fresh := make(map[string]string, len(nonces))
	if err := queryPairs(ctx, tx, `INSERT INTO merchant_nonces (nonce, seen_at) VALUES `+db.Values(rows, 2, 1)+`
		ON CONFLICT (nonce) DO NOTHING RETURNING nonce, nonce`, args, fresh); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	for _, it := range items {
		c := claimOf(it)
		if c == nil || c.stored || c.nonce == "" {
			continue
		}
		if _, ok := fresh[c.nonce]; ok {
			delete(fresh, c.nonce) // the first item with it; a later one replays it
		} else {
			replay(it)
		}
	}
	return nil
}

// queryPairs runs q and collects its two text columns into out.
func queryPairs(ctx context.Context, tx *db.Tx, q string, args []any, out map[string]string) error {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		out[k] = v
	}
	return rows.Err()
}

// inList is "$first, …" for n values, padded to the size class with the
// last value repeated.
func inList(vals []string, first int) (string, []any) {
	rows := db.SizeClass(len(vals))
	args := make([]any, rows)
	ph := make([]string, rows)
	for i := range rows {
		args[i] = vals[min(i, len(vals)-1)]
		ph[i] = fmt.Sprintf("$%d", first+i)
	}
	return strings.Join(ph, ", "), args
}

func existingIDs(ctx context.Context, tx *db.Tx, ids []string) (map[string]bool, error) {
	ph, args := inList(ids, 1)
	found := map[string]string{}
	if err := queryPairs(ctx, tx, `SELECT instance_id, instance_id FROM merchant_instances WHERE instance_id IN (`+ph+`)`, args, found); err != nil {
		return nil, fmt.Errorf("create: check ids: %w", err)
	}
	taken := make(map[string]bool, len(found))
	for id := range found {
		taken[id] = true
	}
	return taken, nil
}

// instancesOfKeys returns, per idempotency key, its instance id and phase.
func instancesOfKeys(ctx context.Context, tx *db.Tx, keys []string) (map[string][2]string, error) {
	ph, args := inList(keys, 1)
	rows, err := tx.Query(ctx, `SELECT k.idem_key, i.instance_id, i.phase FROM merchant_instance_keys k
		JOIN merchant_instances i ON i.instance_id = k.instance_id WHERE k.idem_key IN (`+ph+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("create: instances of keys: %w", err)
	}
	defer rows.Close()
	out := make(map[string][2]string, len(keys))
	for rows.Next() {
		var k, id, phase string
		if err := rows.Scan(&k, &id, &phase); err != nil {
			return nil, fmt.Errorf("create: instances of keys: %w", err)
		}
		out[k] = [2]string{id, phase}
	}
	return out, rows.Err()
}

// insertInstances inserts new instances in one statement. ON CONFLICT DO
// NOTHING makes the padding rows no-ops; an instance that is not inserted
// (its id taken meanwhile) fails the batch, whose creates then run alone.
func insertInstances(ctx context.Context, tx *db.Tx, now time.Time, insts []*Instance) error {
	rows := db.SizeClass(len(insts))
	args := make([]any, 0, rows*13)
	for i := 0; i < rows; i++ {
		in := insts[min(i, len(insts)-1)]
		args = append(args, in.ID, in.OrderID, in.OrderLineID, in.BusinessID, b2i(in.TestFlag), in.Phase, in.Status,
			in.ProductID, in.SkuCode, in.ChargingMode, string(in.Order), now.UnixMilli(), now.UnixMilli())
	}
	q := `INSERT INTO merchant_instances (instance_id, order_id, order_line_id, business_id, test_flag, phase, status,
		product_id, sku_code, charging_mode, order_json, created_at, updated_at) VALUES ` + db.Values(rows, 13, 1) +
		` ON CONFLICT (instance_id) DO NOTHING RETURNING instance_id, instance_id`
	got := make(map[string]string, len(insts))
	if err := queryPairs(ctx, tx, q, args, got); err != nil {
		return fmt.Errorf("create: insert instances: %w", err)
	}
	for _, in := range insts {
		if _, ok := got[in.ID]; !ok {
			return fmt.Errorf("create: instance id %s taken concurrently", in.ID)
		}
	}
	return nil
}

// auditItem is one request's audit record (and nonce) in a batch.
type auditItem struct {
	ctx      context.Context
	claim    *nonceClaim // the request's nonce when no write stored it yet
	auditFor func(replay bool) auditEntry
	replay   bool
	err      error
}

func (m *Merchant) runAudits(items []*auditItem) {
	ctx, cancel := batchCtx()
	defer cancel()
	err := m.do(ctx, func(tx *db.Tx) error { return auditBatchTx(ctx, tx, m.clock.Now(), items) })
	if err == nil {
		for _, it := range items {
			if it.claim != nil {
				it.claim.stored = true
			}
		}
		return
	}
	m.log.Warn("batched audit write failed; its records are written one by one", "records", len(items), "err", err)
	for _, it := range items {
		it.replay = false
		it.err = m.finishRequestAlone(it.ctx, it.claim, it.auditFor)
		if it.err == errReplay {
			it.replay, it.err = true, nil
		}
	}
}

func auditBatchTx(ctx context.Context, tx *db.Tx, now time.Time, items []*auditItem) error {
	for _, it := range items {
		it.replay, it.err = false, nil
	}
	if err := storeNonces(ctx, tx, now, items, func(it *auditItem) *nonceClaim { return it.claim }, func(it *auditItem) { it.replay = true }); err != nil {
		return err
	}
	entries := make([]auditEntry, len(items))
	for i, it := range items {
		entries[i] = it.auditFor(it.replay)
	}
	// Audit rows have no natural key to make a repeated row a no-op: the
	// batch is written in chunks of power-of-two sizes (37 = 32 + 4 + 1).
	for len(entries) > 0 {
		n := db.PowerBelow(len(entries))
		if err := insertAudits(ctx, tx, entries[:n]); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

const auditColumns = 13

func insertAudits(ctx context.Context, tx execer, es []auditEntry) error {
	args := make([]any, 0, len(es)*auditColumns)
	for _, e := range es {
		args = append(args, e.At.UnixMilli(), e.Source, db.Text(e.Remote, 100), db.Text(e.Activity, 64), db.Text(e.ResultCode, 32), e.KeyIndex, db.Text(e.InstanceID, 7000),
			db.Text(e.OrderID, 200), db.Text(e.OrderLineID, 200), db.Text(e.BusinessID, 200), b2i(e.TestFlag), e.Latency.Milliseconds(), db.Text(e.Message, 500))
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit_log (at, source, remote, activity, result_code, key_index, instance_id,
		order_id, order_line_id, business_id, test_flag, latency_ms, message) VALUES `+db.Values(len(es), auditColumns, 1), args...)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// deliveryItem is the successful inline delivery of a batched create's
// instance.created event, to record.
type deliveryItem struct {
	ev      *handoff.Stored
	to      string
	info    *AppInfo // validated appInfo from the answer; nil: a plain acknowledgement
	changed bool     // the event was pending and is now delivered
	err     error    // the batch failed: record alone
}

func (m *Merchant) runDeliveries(items []*deliveryItem) {
	ctx, cancel := batchCtx()
	defer cancel()
	err := m.do(ctx, func(tx *db.Tx) error { return deliveryBatchTx(ctx, tx, m.clock.Now(), items) })
	if err != nil {
		m.log.Warn("batched delivery record failed; its deliveries are recorded one by one", "deliveries", len(items), "err", err)
		for _, it := range items {
			it.changed, it.err = false, err
		}
	}
}

// deliveryBatchTx marks the items' events delivered, completes their jobs and
// stores the appInfo they answered, in three multi-row statements: what
// handoff's markDelivered and applyAnswer do per event.
func deliveryBatchTx(ctx context.Context, tx *db.Tx, now time.Time, items []*deliveryItem) error {
	evs := make([]*handoff.Stored, len(items))
	tos := make([]string, len(items))
	for i, it := range items {
		it.changed, it.err = false, nil
		evs[i], tos[i] = it.ev, it.to
	}
	changed, err := handoff.MarkDeliveredMany(ctx, tx, now, evs, tos)
	if err != nil {
		return err
	}
	var upd []*deliveryItem
	for _, it := range items {
		it.changed = changed[it.ev.ID]
		if it.changed && it.info != nil {
			upd = append(upd, it)
		}
	}
	if len(upd) == 0 {
		return nil
	}
	// Placeholders in the order they appear, none repeated (positional
	// binding on SQLite, sqltext.RebindPositional).
	rows := db.SizeClass(len(upd))
	args := make([]any, 0, 3*rows+3)
	var cases, in strings.Builder
	ids := map[string]bool{}
	for i := 0; i < rows; i++ {
		it := upd[min(i, len(upd)-1)]
		b, err := json.Marshal(it.info)
		if err != nil {
			return err
		}
		ids[it.ev.Subject] = true
		args = append(args, it.ev.Subject, string(b))
		fmt.Fprintf(&cases, " WHEN $%d THEN $%d", 2*i+1, 2*i+2)
	}
	n := 2*rows + 1
	args = append(args, PhaseReady, now.UnixMilli(), now.UnixMilli())
	for i := 0; i < rows; i++ {
		if i > 0 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "$%d", n+3+i)
		args = append(args, upd[min(i, len(upd)-1)].ev.Subject)
	}
	res, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE merchant_instances SET app_info = CASE instance_id%s END, phase = $%d,
		failure_code = '', failure_msg = '', ready_at = CASE WHEN ready_at = 0 THEN $%d ELSE ready_at END, updated_at = $%d WHERE instance_id IN (%s)`, cases.String(), n, n+1, n+2, in.String()), args...)
	if err != nil {
		return fmt.Errorf("store appInfo: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
		return fmt.Errorf("store appInfo: %d of %d instances updated (%v)", n, len(ids), err)
	}
	return nil
}

// simpleCreatedAnswer tells whether the vendor app's answer to a real
// (non-sandbox) instance.created event can be recorded by a batch: a plain
// acknowledgement, or appInfo alone that passes validation and needs no
// encryption check. Anything else (a refusal: resultCode set) is recorded
// alone by handoff (applyAnswer).
func (m *Merchant) simpleCreatedAnswer(ev *handoff.Stored, productID string, answer []byte) (info *AppInfo, ok bool) {
	if ev.TestFlag || ev.Type != EventCreated {
		return nil, false
	}
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 || answer[0] != '{' {
		return nil, true
	}
	var a Answer
	if err := json.Unmarshal(answer, &a); err != nil || a.UsageInfo != nil || a.ResultCode != "" {
		return nil, false
	}
	if a.AppInfo == nil {
		return nil, true
	}
	if a.AppInfo.Validate("appInfo.") != nil || m.cfg.encryptTypeFor(productID) != "" {
		return nil, false
	}
	return a.AppInfo, true
}

// attemptCreated is the inline delivery of a batched create's event: the
// attempt, then its record batched with concurrent ones. ready reports that
// the instance is now ready (appInfo stored), when delivered.
func (m *Merchant) attemptCreated(ctx context.Context, ev *handoff.Stored, productID string, ready *bool) (bool, error) {
	to, answer, err := m.deliver.Try(ctx, ev)
	if err != nil {
		return m.deliver.Failed(ctx, ev, err)
	}
	info, ok := m.simpleCreatedAnswer(ev, productID, answer)
	if !ok {
		return m.deliver.Record(ctx, ev, to, answer)
	}
	it := &deliveryItem{ev: ev, to: to, info: info}
	if err := m.deliveries.Do(context.WithoutCancel(ctx), it); err != nil || it.err != nil {
		return m.deliver.Record(ctx, ev, to, answer)
	}
	m.deliver.Recorded(ev, to)
	*ready = it.changed && info != nil
	return true, nil
}
