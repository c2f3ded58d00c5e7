"""The central database's security model and write path (PostgreSQL only; migration 0004).

Installed by the same Alembic migration that creates the tables, run by a database owner or
superuser (``quantaenergi central init``). What it sets up:

* Roles. ``qe_owner`` (NOLOGIN) owns every table and function. Each workstation user is a
  PostgreSQL login role that is a member of one group role ``qe_trader``, ``qe_risk_manager``,
  ``qe_back_office``, ``qe_compliance`` or ``qe_admin``, all members of ``qe_app``. Application
  roles own nothing, may not create objects, and have SELECT on a few tables only.
* Row-level security, ENABLEd and FORCEd, keyed on ``session_user`` (the authenticated login,
  which ``SET ROLE`` or a custom setting cannot change): traders read the books in
  ``book_access``; risk managers, back office and compliance read every book; admins read
  users and books but no trades. The audit trail is read by compliance and admins (and each
  user's own records).
* Writes only through ``SECURITY DEFINER`` functions that check the session user's permission
  for every change: ``qe_apply(ops json, origin text)`` applies a batch of pushed changes (each
  in its own subtransaction, so one bad change never blocks the rest), ``qe_admin_*`` manage
  users and books. ``qe_apply`` takes one transaction-scoped advisory lock, so change sequence
  numbers are assigned in commit order (a reader that has seen seq N can never later find a
  new row below N), the audit hash chain stays linear under concurrent writers, and two desks
  racing against one position limit are serialised.
* ``audit_log`` rejects UPDATE, DELETE and TRUNCATE by trigger, for every role.

The payload of a trade (see app.sync.payload) is a JSON object with the trade's natural keys
(book name, counterparty LEI, product code), enum names, decimals as scaled integers, dates as
ISO text and timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``qe_trade_payload`` renders a
stored row in exactly that form.
"""

from __future__ import annotations

from typing import Any

ADVISORY_LOCK = 7_346_002  # qe_apply / audit serialisation
NOTIFY_CHANNEL = "qe_changes"
GROUP_ROLES = ("TRADER", "RISK_MANAGER", "BACK_OFFICE", "COMPLIANCE", "ADMIN")
TABLES = (
    "book", "counterparty", "product", "trade", "price_tick", "settlement_curve", "risk_limit",
    "limit_breach", "app_user", "book_access", "outbox", "sync_state", "sync_conflict",
    "change_log", "audit_log", "approval_request",
)  # fmt: skip
READABLE = ("book", "counterparty", "product", "trade", "change_log", "audit_log", "app_user",
            "book_access", "approval_request", "risk_limit", "alembic_version")  # fmt: skip
ECONOMIC_KEYS = (
    "book", "counterparty_lei", "product", "instrument", "side", "quantity", "quantity_unit",
    "price", "currency", "trade_date", "delivery_start", "delivery_end", "option_type",
    "strike", "expiry_date", "exercise_style", "premium", "comment",
)  # fmt: skip
#: Lifecycle statuses a trader may set; later ones belong to the back office.
TRADER_STATUSES = ("CAPTURED", "VALIDATED", "CANCELLED")
#: Statuses after which an economic amendment needs four-eyes approval.
CONFIRMED_STATUSES = ("CONFIRMED", "ALLOCATED", "SETTLED", "INVOICED", "PAID")

TS = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


def _group(role: str) -> str:
    return "qe_" + role.lower()


def _roles_sql() -> str:
    groups = ", ".join(f"'{_group(r)}'" for r in GROUP_ROLES)
    return f"""
DO $$
DECLARE g text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qe_owner') THEN
    CREATE ROLE qe_owner NOLOGIN CREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qe_app') THEN
    CREATE ROLE qe_app NOLOGIN;
  END IF;
  FOREACH g IN ARRAY ARRAY[{groups}] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g) THEN
      EXECUTE 'CREATE ROLE ' || quote_ident(g) || ' NOLOGIN IN ROLE qe_app';
    END IF;
    EXECUTE 'GRANT ' || quote_ident(g) || ' TO qe_owner WITH ADMIN OPTION';
  END LOOP;
  GRANT qe_app TO qe_owner WITH ADMIN OPTION;
END $$"""


def _functions_sql() -> list[str]:
    econ = ", ".join(f"'{k}'" for k in ECONOMIC_KEYS)
    trader_statuses = ", ".join(f"'{s}'" for s in TRADER_STATUSES)
    confirmed = ", ".join(f"'{s}'" for s in CONFIRMED_STATUSES)
    definer = "SECURITY DEFINER SET search_path = public, pg_temp"
    # Internal steps of the definer functions (never executable by application roles): they
    # run as their caller, qe_owner, with its search_path. No SET clause, no identity switch:
    # that save/restore per call cost ~10 % of a pushed change.
    internal = ""
    return [
        f"""
CREATE OR REPLACE FUNCTION qe_role() RETURNS text LANGUAGE sql STABLE {definer} AS $$
  SELECT role::text FROM app_user WHERE username = session_user AND active
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_can_read_book(b integer) RETURNS boolean
LANGUAGE sql STABLE {definer} AS $$
  SELECT EXISTS (
    SELECT 1 FROM app_user u WHERE u.username = session_user AND u.active AND (
      u.role IN ('RISK_MANAGER', 'BACK_OFFICE', 'COMPLIANCE')
      OR (u.role = 'TRADER' AND EXISTS (
            SELECT 1 FROM book_access a WHERE a.username = u.username AND a.book_id = b))))
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_is_admin() RETURNS boolean LANGUAGE sql STABLE {definer} AS $$
  SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = session_user), false)
      OR coalesce(qe_role() = 'ADMIN', false)
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_trade_payload(t trade) RETURNS jsonb
LANGUAGE sql STABLE {definer} AS $$
  SELECT jsonb_build_object(
    'trade_uuid', replace(t.trade_uuid::text, '-', ''), 'version', t.version,
    'book', (SELECT name FROM book WHERE id = t.book_id),
    'counterparty_lei', (SELECT lei FROM counterparty WHERE id = t.counterparty_id),
    'product', (SELECT code FROM product WHERE id = t.product_id),
    'instrument', t.instrument, 'side', t.side, 'quantity', t.quantity,
    'quantity_unit', t.quantity_unit, 'price', t.price, 'currency', t.currency,
    'trade_date', to_char(t.trade_date, 'YYYY-MM-DD'),
    'delivery_start', to_char(t.delivery_start, 'YYYY-MM-DD'),
    'delivery_end', to_char(t.delivery_end, 'YYYY-MM-DD'), 'status', t.status,
    'option_type', t.option_type, 'strike', t.strike,
    'expiry_date', to_char(t.expiry_date, 'YYYY-MM-DD'), 'exercise_style', t.exercise_style,
    'premium', t.premium, 'comment', t.comment,
    'created_by', t.created_by, 'created_at', to_char(t.created_at, {TS}),
    'updated_by', t.updated_by, 'updated_at', to_char(t.updated_at, {TS}))
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_audit_append(
    p_entity text, p_entity_id text, p_action text, p_workstation text,
    p_before jsonb, p_after jsonb, p_extra jsonb, p_prev text DEFAULT NULL) RETURNS json
LANGUAGE plpgsql {internal} AS $$
DECLARE
  last_hash text;
  now_utc timestamp := clock_timestamp() AT TIME ZONE 'UTC';
  body text;
  h text;
  s bigint;
BEGIN
  PERFORM pg_advisory_xact_lock({ADVISORY_LOCK});
  IF p_prev IS NOT NULL THEN
    -- the caller (qe_apply) tracks the head within its batch: reading it back here would
    -- check visibility against hundreds of subtransactions for every record
    last_hash := nullif(p_prev, '');
  ELSE
    SELECT a.hash INTO last_hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
  END IF;
  body := jsonb_build_object(
    'ts', to_char(now_utc, {TS}), 'user', session_user, 'workstation', p_workstation,
    'entity', p_entity, 'entity_id', p_entity_id, 'action', p_action,
    'before', p_before, 'after', p_after, 'extra', coalesce(p_extra, '{{}}'::jsonb))::text;
  h := encode(sha256(convert_to(coalesce(last_hash, repeat('0', 64)) || chr(10) || body,
                                'UTF8')), 'hex');
  INSERT INTO audit_log (ts, username, workstation, entity, entity_id, action, body,
                         prev_hash, hash)
  VALUES (date_trunc('microseconds', now_utc), session_user, p_workstation, p_entity,
          p_entity_id, p_action, body, coalesce(last_hash, repeat('0', 64)), h)
  RETURNING seq INTO s;
  RETURN json_build_object('seq', s, 'hash', h);
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_book_id(bname text) RETURNS integer
LANGUAGE plpgsql {internal} AS $$
DECLARE bid integer;
BEGIN
  SELECT id INTO bid FROM book WHERE name = bname;
  IF bid IS NULL THEN
    RAISE EXCEPTION 'book "%" does not exist in the desk database', bname
      USING ERRCODE = '23503';
  END IF;
  RETURN bid;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_check_author(p jsonb) RETURNS void
LANGUAGE plpgsql {internal} AS $$
BEGIN
  IF p->>'updated_by' IS DISTINCT FROM session_user::text THEN
    RAISE EXCEPTION 'a change written by % cannot be pushed by %', p->>'updated_by',
      session_user USING ERRCODE = '42501';
  END IF;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_usable_approval(
    request text, rkind text, rentity text, rkey text) RETURNS approval_request
LANGUAGE plpgsql {internal} AS $$
-- The four-eyes request ``request`` if it may authorise this change now: of kind ``rkind``
-- (for entity key ``rkey`` unless NULL), approved by a second user, executed by its approver
-- or requester, and not used by any earlier ``rentity`` change (the audit trail says).
DECLARE a approval_request%ROWTYPE;
BEGIN
  SELECT * INTO a FROM approval_request x
   WHERE x.request_uuid = request AND x.kind = rkind AND x.state IN ('approved', 'applied')
     AND (rkey IS NULL OR x.entity_key = rkey)
     AND x.decided_by IS NOT NULL AND x.decided_by IS DISTINCT FROM x.requested_by
     AND session_user::text IN (x.decided_by, x.requested_by);
  IF NOT FOUND OR EXISTS (SELECT 1 FROM audit_log l
                           WHERE l.entity = rentity AND (rkey IS NULL OR l.entity_id = rkey)
                             AND l.body::jsonb #>> '{{extra,approval}}' = request) THEN
    RETURN NULL;
  END IF;
  RETURN a;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_log_change(
    op json, sha text, entity text, ekey text, bid integer, v integer, payload text,
    origin text) RETURNS bigint
LANGUAGE plpgsql {internal} AS $$
DECLARE s bigint;
BEGIN
  INSERT INTO change_log (op_id, payload_sha, entity, entity_key, book_id, version, payload,
                          origin, username, client_ts, committed_at)
  VALUES (op->>'op_id', sha, entity, ekey, bid, v, payload, origin, session_user,
          (op->>'client_ts')::timestamp, clock_timestamp() AT TIME ZONE 'UTC')
  RETURNING seq INTO s;
  RETURN s;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_apply_trade(
    op json, origin text, r text, wbooks integer[], prev text) RETURNS json
LANGUAGE plpgsql {internal} AS $$
DECLARE
  ptext text := op->>'payload';
  oid text := op->>'op_id';
  sha text := encode(sha256(convert_to(op->>'payload', 'UTF8')), 'hex');
  p jsonb;
  cur trade%ROWTYPE;
  found_cur boolean;
  v integer;
  bid integer; cid integer; pid integer;
  before jsonb;
  act text;
  lim record;
  old_net numeric; new_net numeric; signed numeric;
  s bigint;
  aud json;
  appr approval_request%ROWTYPE;
  approved boolean;
BEGIN
  p := ptext::jsonb;
  v := (p->>'version')::integer;
  PERFORM qe_check_author(p);
  bid := qe_book_id(p->>'book');
  SELECT (SELECT id FROM counterparty WHERE lei = p->>'counterparty_lei'),
         (SELECT id FROM product WHERE code = p->>'product')
    INTO cid, pid;
  IF cid IS NULL THEN
    RAISE EXCEPTION 'counterparty with LEI % does not exist in the desk database',
      p->>'counterparty_lei' USING ERRCODE = '23503';
  END IF;
  IF pid IS NULL THEN
    RAISE EXCEPTION 'product % does not exist in the desk database', p->>'product'
      USING ERRCODE = '23503';
  END IF;
  -- no FOR UPDATE needed: the advisory lock already serialises every writer
  SELECT * INTO cur FROM trade t
   WHERE t.trade_uuid = (p->>'trade_uuid')::uuid AND t.is_current;
  found_cur := FOUND;
  IF (found_cur AND cur.version <> v - 1) OR (NOT found_cur AND v <> 1) THEN
    RETURN json_build_object('op_id', oid, 'status', 'conflict',
                             'server_version', CASE WHEN found_cur THEN cur.version END);
  END IF;
  IF found_cur THEN
    before := qe_trade_payload(cur);
    IF p->>'status' = 'CANCELLED' AND cur.status <> 'CANCELLED' THEN
      act := 'cancel';
    ELSIF (SELECT jsonb_object_agg(k, before->k) FROM unnest(ARRAY[{econ}]) k)
        = (SELECT jsonb_object_agg(k, p->k) FROM unnest(ARRAY[{econ}]) k) THEN
      act := 'status';
    ELSE
      act := 'amend';
    END IF;
    IF cur.status = 'CANCELLED' THEN
      RAISE EXCEPTION 'trade % is cancelled; a cancelled trade cannot change',
        left(p->>'trade_uuid', 8) USING ERRCODE = '42501';
    END IF;
  ELSE
    act := 'capture';
  END IF;
  -- a four-eyes approved amendment / cancellation: executed by its approver or requester
  approved := false;
  IF op->>'approval' IS NOT NULL AND found_cur AND act IN ('amend', 'cancel') THEN
    appr := qe_usable_approval(op->>'approval',
                               CASE act WHEN 'amend' THEN 'trade_amend' ELSE 'trade_cancel' END,
                               'trade', p->>'trade_uuid');
    approved := appr.id IS NOT NULL
      -- and the requester may write this book
      AND EXISTS (SELECT 1 FROM book_access ba JOIN app_user u ON u.username = ba.username
                   WHERE ba.username = appr.requested_by AND ba.book_id = bid
                     AND u.role = 'TRADER' AND u.active);
    IF NOT approved THEN
      RAISE EXCEPTION 'approval % is not an approved, unused four-eyes request for this change',
        left(op->>'approval', 8) USING ERRCODE = '42501';
    END IF;
  END IF;
  -- permissions, by the session user's role
  IF approved THEN
    NULL;  -- checked above: second user, requester's book, single use
  ELSIF r = 'TRADER' THEN
    IF NOT (bid = ANY (wbooks)) OR (found_cur AND NOT (cur.book_id = ANY (wbooks))) THEN
      RAISE EXCEPTION '% may not write trades in book %', session_user, p->>'book'
        USING ERRCODE = '42501';
    END IF;
    IF act = 'capture' AND NOT (p->>'status' IN ('CAPTURED', 'VALIDATED')) THEN
      RAISE EXCEPTION 'a new trade starts as Captured or Validated' USING ERRCODE = '42501';
    END IF;
    IF act = 'status' AND NOT (p->>'status' = ANY (ARRAY[{trader_statuses}])) THEN
      RAISE EXCEPTION 'the lifecycle step to % is a back-office action', p->>'status'
        USING ERRCODE = '42501';
    END IF;
    IF act = 'amend' AND p->>'status' IS DISTINCT FROM cur.status::text THEN
      RAISE EXCEPTION 'an amendment keeps the status (%)', cur.status USING ERRCODE = '42501';
    END IF;
    IF found_cur AND act IN ('amend', 'cancel') AND cur.status = ANY (ARRAY[{confirmed}]) THEN
      SELECT * INTO appr FROM approval_request a
       WHERE a.request_uuid = op->>'approval' AND a.state = 'approved'
         AND a.entity_key = p->>'trade_uuid' AND a.requested_by = session_user::text
         AND a.decided_by IS DISTINCT FROM a.requested_by;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'changing a % trade needs four-eyes approval', lower(cur.status)
          USING ERRCODE = '42501';
      END IF;
    END IF;
  ELSIF r = 'BACK_OFFICE' THEN
    IF act <> 'status' THEN
      RAISE EXCEPTION 'back office may only move trades through the lifecycle, not %', act
        USING ERRCODE = '42501';
    END IF;
  ELSE
    RAISE EXCEPTION 'role % may not write trades', lower(r) USING ERRCODE = '42501';
  END IF;
  -- a position limit shared by every desk: checked under the advisory lock
  IF p->>'instrument' <> 'OPTION' THEN
    FOR lim IN SELECT * FROM risk_limit l WHERE l.book_id = bid AND l.kind = 'POSITION'
                AND l.product = p->>'product' AND l.active LOOP
      SELECT coalesce(sum(CASE WHEN t.side = 'BUY' THEN t.quantity ELSE -t.quantity END), 0)
        INTO old_net FROM trade t
       WHERE t.is_current AND t.book_id = bid AND t.product_id = pid
         AND t.status <> 'CANCELLED' AND t.instrument <> 'OPTION'
         AND t.trade_uuid <> (p->>'trade_uuid')::uuid;
      signed := CASE WHEN p->>'status' = 'CANCELLED' THEN 0
                     WHEN p->>'side' = 'BUY' THEN (p->>'quantity')::numeric
                     ELSE -(p->>'quantity')::numeric END;
      new_net := old_net + signed;
      IF abs(new_net) > lim.limit_value AND abs(new_net) > abs(old_net) THEN
        RAISE EXCEPTION 'would breach the % position limit of book %: net % > limit %',
          p->>'product', p->>'book', new_net / 1000, lim.limit_value / 1000
          USING ERRCODE = '23514';
      END IF;
    END LOOP;
  END IF;
  IF found_cur THEN
    UPDATE trade SET is_current = false WHERE id = cur.id;
  END IF;
  INSERT INTO trade (trade_uuid, version, is_current, book_id, counterparty_id, product_id,
      instrument, side, quantity, quantity_unit, price, currency, trade_date, delivery_start,
      delivery_end, status, option_type, strike, expiry_date, exercise_style, premium, comment,
      created_by, created_at, updated_by, updated_at)
  VALUES ((p->>'trade_uuid')::uuid, v, true, bid, cid, pid, p->>'instrument', p->>'side',
      (p->>'quantity')::bigint, p->>'quantity_unit', (p->>'price')::bigint, p->>'currency',
      (p->>'trade_date')::date, (p->>'delivery_start')::date, (p->>'delivery_end')::date,
      p->>'status', p->>'option_type', (p->>'strike')::bigint, (p->>'expiry_date')::date,
      p->>'exercise_style', (p->>'premium')::bigint, p->>'comment', p->>'created_by',
      (p->>'created_at')::timestamp, p->>'updated_by', (p->>'updated_at')::timestamp);
  s := qe_log_change(op, sha, 'trade', p->>'trade_uuid', bid, v, ptext, origin);
  aud := qe_audit_append('trade', p->>'trade_uuid', act, origin, before, p,
                         jsonb_build_object('op_id', oid, 'seq', s,
                                            'client_ts', op->>'client_ts',
                                            'approval', op->>'approval'), prev);
  IF approved THEN
    UPDATE approval_request SET state = 'applied' WHERE request_uuid = op->>'approval'
       AND state = 'approved';
  END IF;
  RETURN json_build_object('op_id', oid, 'status', 'applied', 'seq', s,
                           'audit_seq', aud->'seq', 'audit_hash', aud->'hash');
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_apply_approval(
    op json, origin text, r text, wbooks integer[], prev text) RETURNS json LANGUAGE plpgsql {internal} AS $$
DECLARE
  ptext text := op->>'payload';
  oid text := op->>'op_id';
  sha text := encode(sha256(convert_to(op->>'payload', 'UTF8')), 'hex');
  p jsonb;
  cur approval_request%ROWTYPE;
  bid integer;
  s bigint;
  aud json;
  trade_kind boolean;
BEGIN
  p := ptext::jsonb;
  bid := qe_book_id(p->>'book');
  trade_kind := p->>'kind' IN ('trade_amend', 'trade_cancel');
  IF NOT trade_kind AND p->>'kind' <> 'limit_change' THEN
    RAISE EXCEPTION 'unknown kind of request %', p->>'kind' USING ERRCODE = '22023';
  END IF;
  SELECT * INTO cur FROM approval_request a WHERE a.request_uuid = p->>'request_uuid';
  IF NOT FOUND THEN
    -- a new request: by its requester, who may make the change it asks for
    IF p->>'state' <> 'pending' OR p->>'requested_by' IS DISTINCT FROM session_user::text THEN
      RAISE EXCEPTION 'the desk database does not have request % yet',
        left(p->>'request_uuid', 8) USING ERRCODE = '42501';
    END IF;
    IF (trade_kind AND NOT (bid = ANY (wbooks))) OR (NOT trade_kind AND r <> 'RISK_MANAGER') THEN
      RAISE EXCEPTION '% may not request this change in book %', session_user, p->>'book'
        USING ERRCODE = '42501';
    END IF;
    INSERT INTO approval_request (request_uuid, kind, entity_key, book_id, summary, payload,
        requested_by, requested_at, state, decided_by, decided_at, decision_comment)
    VALUES (p->>'request_uuid', p->>'kind', p->>'entity_key', bid, left(p->>'summary', 300),
        coalesce(p->'payload', '{{}}'::jsonb)::text, session_user,
        (p->>'requested_at')::timestamp, 'pending', NULL, NULL, '');
  ELSIF p->>'state' IN ('approved', 'rejected') AND cur.state = 'pending' THEN
    IF cur.requested_by = session_user::text THEN
      RAISE EXCEPTION 'a user can never approve their own request' USING ERRCODE = '42501';
    END IF;
    IF NOT (r = 'RISK_MANAGER' OR (r = 'BACK_OFFICE' AND trade_kind)) THEN
      RAISE EXCEPTION 'role % may not decide % requests', lower(r), p->>'kind'
        USING ERRCODE = '42501';
    END IF;
    UPDATE approval_request SET state = p->>'state', decided_by = session_user,
           decided_at = clock_timestamp() AT TIME ZONE 'UTC',
           decision_comment = left(coalesce(p->>'decision_comment', ''), 300)
     WHERE id = cur.id;
  ELSIF p->>'state' = 'withdrawn' AND cur.state = 'pending'
        AND cur.requested_by = session_user::text THEN
    UPDATE approval_request SET state = 'withdrawn' WHERE id = cur.id;
  ELSIF p->>'state' IN ('applied', 'rejected') AND cur.state IN ('approved', 'applied')
        AND session_user::text IN (cur.decided_by, cur.requested_by) THEN
    -- executed (or could not be: the trade moved on) by its approver or requester
    UPDATE approval_request SET state = p->>'state',
           decision_comment = CASE WHEN p->>'state' = 'rejected'
             THEN left(coalesce(p->>'decision_comment', ''), 300) ELSE decision_comment END
     WHERE id = cur.id AND NOT (state = 'applied' AND p->>'state' = 'applied');
  ELSE
    RAISE EXCEPTION 'request % is %: % cannot make it %', left(cur.request_uuid, 8),
      cur.state, session_user, p->>'state' USING ERRCODE = '42501';
  END IF;
  s := qe_log_change(op, sha, 'approval', p->>'request_uuid', bid, (op->>'version')::integer,
                     (SELECT qe_approval_payload(a) FROM approval_request a
                       WHERE a.request_uuid = p->>'request_uuid')::text, origin);
  aud := qe_audit_append('approval', p->>'request_uuid', p->>'state', origin, NULL, p,
                         jsonb_build_object('op_id', oid, 'seq', s), prev);
  RETURN json_build_object('op_id', oid, 'status', 'applied', 'seq', s,
                           'audit_seq', aud->'seq', 'audit_hash', aud->'hash');
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_approval_payload(a approval_request) RETURNS jsonb
LANGUAGE sql STABLE {definer} AS $$
  SELECT jsonb_build_object(
    'request_uuid', a.request_uuid, 'kind', a.kind, 'entity_key', a.entity_key,
    'book', (SELECT name FROM book WHERE id = a.book_id), 'summary', a.summary,
    'payload', a.payload::jsonb, 'requested_by', a.requested_by,
    'requested_at', to_char(a.requested_at, {TS}), 'state', a.state,
    'decided_by', a.decided_by, 'decided_at', to_char(a.decided_at, {TS}),
    'decision_comment', a.decision_comment)
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_apply_limit(
    op json, origin text, r text, wbooks integer[], prev text) RETURNS json
LANGUAGE plpgsql {internal} AS $$
DECLARE
  ptext text := op->>'payload';
  oid text := op->>'op_id';
  sha text := encode(sha256(convert_to(op->>'payload', 'UTF8')), 'hex');
  p jsonb;
  cur risk_limit%ROWTYPE;
  found_cur boolean;
  v integer;
  bid integer;
  appr approval_request%ROWTYPE;
  s bigint;
  aud json;
BEGIN
  p := ptext::jsonb;
  v := (p->>'version')::integer;
  IF r <> 'RISK_MANAGER' THEN
    RAISE EXCEPTION 'role % may not set limits', lower(r) USING ERRCODE = '42501';
  END IF;
  PERFORM qe_check_author(p);
  bid := qe_book_id(p->>'book');
  -- four-eyes: every limit change carries an approval decided by a second user, used once
  appr := qe_usable_approval(p->>'approval', 'limit_change', 'limit', NULL);
  IF appr.id IS NULL THEN
    RAISE EXCEPTION 'a limit change needs an approved, unused four-eyes request'
      USING ERRCODE = '42501';
  END IF;
  SELECT * INTO cur FROM risk_limit l WHERE l.limit_uuid = p->>'limit_uuid';
  found_cur := FOUND;
  IF found_cur AND cur.version <> v - 1 THEN
    RAISE EXCEPTION 'limit changed on another desk meanwhile (by %, now version %): reload it',
      cur.updated_by, cur.version USING ERRCODE = '40001';
  END IF;
  IF found_cur THEN
    UPDATE risk_limit SET book_id = bid, kind = p->>'kind', product = p->>'product',
        currency = p->>'currency', confidence = (p->>'confidence')::double precision,
        horizon_days = (p->>'horizon_days')::integer,
        limit_value = (p->>'limit_value')::bigint, warning_pct = (p->>'warning_pct')::bigint,
        active = (p->>'active')::boolean, comment = p->>'comment',
        updated_by = session_user, updated_at = (p->>'updated_at')::timestamp, version = v
     WHERE id = cur.id;
  ELSE
    INSERT INTO risk_limit (limit_uuid, book_id, kind, product, currency, confidence,
        horizon_days, limit_value, warning_pct, active, comment, created_by, created_at,
        updated_by, updated_at, version)
    VALUES (p->>'limit_uuid', bid, p->>'kind', p->>'product', p->>'currency',
        (p->>'confidence')::double precision, (p->>'horizon_days')::integer,
        (p->>'limit_value')::bigint, (p->>'warning_pct')::bigint, (p->>'active')::boolean,
        p->>'comment', p->>'created_by', (p->>'created_at')::timestamp, session_user,
        (p->>'updated_at')::timestamp, v);
  END IF;
  UPDATE approval_request SET state = 'applied' WHERE id = appr.id AND state = 'approved';
  s := qe_log_change(op, sha, 'limit', p->>'limit_uuid', bid, v, ptext, origin);
  aud := qe_audit_append('limit', p->>'limit_uuid', CASE WHEN found_cur THEN 'update'
                         ELSE 'create' END, origin, NULL, p,
                         jsonb_build_object('op_id', oid, 'seq', s,
                                            'approval', p->>'approval'), prev);
  RETURN json_build_object('op_id', oid, 'status', 'applied', 'seq', s,
                           'audit_seq', aud->'seq', 'audit_hash', aud->'hash');
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_apply_one(
    op json, origin text, r text, wbooks integer[], prev text) RETURNS json
LANGUAGE plpgsql {internal} AS $$
DECLARE
  ex record;
BEGIN
  -- idempotency: a change seen before is answered, never applied twice
  SELECT c.payload_sha, c.seq INTO ex FROM change_log c WHERE c.op_id = op->>'op_id';
  IF FOUND THEN
    IF ex.payload_sha = encode(sha256(convert_to(op->>'payload', 'UTF8')), 'hex') THEN
      RETURN json_build_object('op_id', op->>'op_id', 'status', 'duplicate', 'seq', ex.seq);
    END IF;
    RETURN json_build_object('op_id', op->>'op_id', 'status', 'rejected', 'error',
      'idempotency key ' || (op->>'op_id') || ' was already used for a different change');
  END IF;
  IF r IS NULL THEN
    RAISE EXCEPTION 'user % is not an active workstation user', session_user
      USING ERRCODE = '42501';
  END IF;
  IF op->>'entity' = 'trade' THEN
    RETURN qe_apply_trade(op, origin, r, wbooks, prev);
  ELSIF op->>'entity' = 'approval' THEN
    RETURN qe_apply_approval(op, origin, r, wbooks, prev);
  ELSIF op->>'entity' = 'limit' THEN
    RETURN qe_apply_limit(op, origin, r, wbooks, prev);
  END IF;
  RETURN json_build_object('op_id', op->>'op_id', 'status', 'rejected',
                           'error', 'unknown kind of change ' || (op->>'entity'));
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_apply(ops json, origin text) RETURNS json
LANGUAGE plpgsql {definer} AS $$
DECLARE
  op json;
  res json;
  results json[];
  r text;
  wbooks integer[];
  head text;
  last_seq bigint;
  last_hash text;
  fast boolean := true;
BEGIN
  PERFORM pg_advisory_xact_lock({ADVISORY_LOCK});
  -- the audit chain head ('' for an empty chain), tracked through the batch
  head := coalesce((SELECT a.hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1), '');
  r := qe_role();
  -- the books this session's user may write (traders), once per batch
  wbooks := ARRAY(SELECT a.book_id FROM book_access a JOIN app_user u ON u.username = a.username
                  WHERE u.username = session_user AND u.active AND u.role = 'TRADER');
  -- Fast path: the whole batch in ONE subtransaction. When any change raises, it is rolled
  -- back and the batch is redone with one subtransaction per change, so a bad change is
  -- rejected alone. (Hundreds of subtransactions per batch would overflow every reader's
  -- snapshot cache and slow the desk.)
  BEGIN
    results := ARRAY[]::json[]; last_seq := 0; last_hash := head;
    FOR op IN SELECT value FROM json_array_elements(ops) LOOP
      res := qe_apply_one(op, origin, r, wbooks, last_hash);
      IF res->>'status' = 'applied' THEN
        last_seq := greatest(last_seq, (res->>'seq')::bigint);
        last_hash := coalesce(res->>'audit_hash', last_hash);
      END IF;
      results := results || res;
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    fast := false;
  END;
  IF NOT fast THEN
    results := ARRAY[]::json[]; last_seq := 0; last_hash := head;
    FOR op IN SELECT value FROM json_array_elements(ops) LOOP
      BEGIN
        res := qe_apply_one(op, origin, r, wbooks, last_hash);
      EXCEPTION WHEN OTHERS THEN
        res := json_build_object('op_id', op->>'op_id', 'status', 'rejected',
                                 'error', SQLERRM, 'sqlstate', SQLSTATE);
      END;
      IF res->>'status' = 'applied' THEN
        last_seq := greatest(last_seq, (res->>'seq')::bigint);
        last_hash := coalesce(res->>'audit_hash', last_hash);
      END IF;
      results := results || res;
    END LOOP;
  END IF;
  IF last_seq > 0 THEN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', last_seq::text);
  END IF;
  RETURN json_build_object('results', array_to_json(results),
                           'server_time', to_char(clock_timestamp() AT TIME ZONE 'UTC', {TS}));
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_whoami() RETURNS json LANGUAGE sql STABLE {definer} AS $$
  SELECT json_build_object(
    'user', session_user::text, 'role', qe_role(),
    'display_name', (SELECT display_name FROM app_user WHERE username = session_user),
    'books', (SELECT coalesce(json_agg(b.name ORDER BY b.name), '[]'::json)
                FROM book_access a JOIN book b ON b.id = a.book_id
               WHERE a.username = session_user),
    'schema', (SELECT version_num FROM alembic_version LIMIT 1),
    'server_time', to_char(clock_timestamp() AT TIME ZONE 'UTC', {TS}))
$$""",
        f"""
CREATE OR REPLACE FUNCTION qe_admin_create_user(
    uname text, display text, urole text, pw text, books text[]) RETURNS void
LANGUAGE plpgsql {definer} AS $$
DECLARE
  before jsonb;
  after jsonb;
BEGIN
  IF NOT qe_is_admin() THEN
    RAISE EXCEPTION 'only an admin may manage users' USING ERRCODE = '42501';
  END IF;
  IF uname !~ '^[a-z][a-z0-9_.-]{{0,59}}$' OR uname LIKE 'qe\\_%' OR uname = 'postgres' THEN
    RAISE EXCEPTION 'invalid user name %', uname USING ERRCODE = '22023';
  END IF;
  IF NOT (urole = ANY (ARRAY['TRADER','RISK_MANAGER','BACK_OFFICE','COMPLIANCE','ADMIN'])) THEN
    RAISE EXCEPTION 'unknown role %', urole USING ERRCODE = '22023';
  END IF;
  SELECT to_jsonb(u) - 'password_hash' - 'id' INTO before FROM app_user u WHERE username = uname;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = uname) THEN
    IF pw IS NOT NULL THEN
      EXECUTE 'ALTER ROLE ' || quote_ident(uname) || ' LOGIN PASSWORD ' || quote_literal(pw);
    END IF;
  ELSE
    EXECUTE 'CREATE ROLE ' || quote_ident(uname) || ' LOGIN PASSWORD ' || quote_literal(pw);
  END IF;
  EXECUTE 'REVOKE qe_trader, qe_risk_manager, qe_back_office, qe_compliance, qe_admin FROM '
          || quote_ident(uname);
  EXECUTE 'GRANT ' || quote_ident('qe_' || lower(urole)) || ' TO ' || quote_ident(uname);
  INSERT INTO app_user (username, display_name, role, active, password_hash, updated_at, version)
  VALUES (uname, coalesce(display, ''), urole, true, NULL, clock_timestamp() AT TIME ZONE 'UTC', 1)
  ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name,
      role = EXCLUDED.role, active = true, updated_at = EXCLUDED.updated_at,
      version = app_user.version + 1;
  DELETE FROM book_access WHERE username = uname;
  INSERT INTO book_access (username, book_id)
  SELECT uname, b.id FROM book b WHERE b.name = ANY (coalesce(books, ARRAY[]::text[]));
  SELECT to_jsonb(u) - 'password_hash' - 'id' INTO after FROM app_user u WHERE username = uname;
  after := after || jsonb_build_object('books', coalesce(books, ARRAY[]::text[]));
  PERFORM qe_audit_append('user', uname, CASE WHEN before IS NULL THEN 'create' ELSE 'update' END,
                          'central', before, after, NULL);
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_admin_deactivate_user(uname text) RETURNS void
LANGUAGE plpgsql {definer} AS $$
BEGIN
  IF NOT qe_is_admin() THEN
    RAISE EXCEPTION 'only an admin may manage users' USING ERRCODE = '42501';
  END IF;
  UPDATE app_user SET active = false, version = version + 1,
         updated_at = clock_timestamp() AT TIME ZONE 'UTC' WHERE username = uname;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = uname) THEN
    EXECUTE 'ALTER ROLE ' || quote_ident(uname) || ' NOLOGIN';
  END IF;
  PERFORM qe_audit_append('user', uname, 'deactivate', 'central', NULL, NULL, NULL);
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_admin_upsert_book(bname text, descr text) RETURNS integer
LANGUAGE plpgsql {definer} AS $$
DECLARE bid integer;
BEGIN
  IF NOT qe_is_admin() THEN
    RAISE EXCEPTION 'only an admin may manage books' USING ERRCODE = '42501';
  END IF;
  INSERT INTO book (name, description, is_demo) VALUES (bname, coalesce(descr, ''), false)
  ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description RETURNING id INTO bid;
  PERFORM qe_audit_append('book', bname, 'upsert', 'central', NULL,
                          jsonb_build_object('name', bname, 'description', descr), NULL);
  RETURN bid;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION qe_admin_upsert_counterparty(
    cname text, clei text, ccountry text, islamic boolean) RETURNS integer
LANGUAGE plpgsql {definer} AS $$
DECLARE cid integer;
BEGIN
  IF NOT qe_is_admin() THEN
    RAISE EXCEPTION 'only an admin may manage counterparties' USING ERRCODE = '42501';
  END IF;
  INSERT INTO counterparty (name, lei, country, is_islamic, is_demo)
  VALUES (cname, clei, ccountry, islamic, false)
  ON CONFLICT (lei) DO UPDATE SET name = EXCLUDED.name, country = EXCLUDED.country,
      is_islamic = EXCLUDED.is_islamic RETURNING id INTO cid;
  PERFORM qe_audit_append('counterparty', clei, 'upsert', 'central', NULL,
      jsonb_build_object('name', cname, 'lei', clei, 'country', ccountry,
                         'is_islamic', islamic), NULL);
  RETURN cid;
END $$""",
        """
CREATE OR REPLACE FUNCTION qe_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = '42501';
END $$""",
    ]


def _security_sql() -> list[str]:
    out = []
    for table in TABLES:
        out.append(f"ALTER TABLE {table} OWNER TO qe_owner")
        out.append(f"REVOKE ALL ON {table} FROM PUBLIC")
    out.append("GRANT USAGE ON SCHEMA public TO qe_app")
    out.append(f"GRANT SELECT ON {', '.join(READABLE)} TO qe_app")
    for table in ("trade", "change_log", "audit_log", "app_user", "book_access",
                  "approval_request", "risk_limit"):  # fmt: skip
        out.append(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        out.append(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        out.append(f"CREATE POLICY {table}_owner ON {table} TO qe_owner USING (true) "
                   "WITH CHECK (true)")  # fmt: skip
    out += [
        "CREATE POLICY trade_read ON trade FOR SELECT TO qe_app USING (qe_can_read_book(book_id))",
        "CREATE POLICY change_log_read ON change_log FOR SELECT TO qe_app "
        "USING (book_id IS NOT NULL AND qe_can_read_book(book_id))",
        "CREATE POLICY risk_limit_read ON risk_limit FOR SELECT TO qe_app "
        "USING (qe_can_read_book(book_id))",
        "CREATE POLICY approval_request_read ON approval_request FOR SELECT TO qe_app "
        "USING (requested_by = session_user::text OR qe_can_read_book(book_id))",
        "CREATE POLICY audit_log_read ON audit_log FOR SELECT TO qe_app "
        "USING (username = session_user::text OR qe_role() IN ('COMPLIANCE', 'ADMIN'))",
        "CREATE POLICY app_user_read ON app_user FOR SELECT TO qe_app "
        "USING (username = session_user::text OR qe_role() = 'ADMIN')",
        "CREATE POLICY book_access_read ON book_access FOR SELECT TO qe_app "
        "USING (username = session_user::text OR qe_role() = 'ADMIN')",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION qe_audit_immutable()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION qe_audit_immutable()",
    ]
    functions = [
        "qe_role()", "qe_can_read_book(integer)", "qe_is_admin()",
        "qe_trade_payload(trade)", "qe_audit_append(text, text, text, text, jsonb, jsonb, jsonb, text)",
        "qe_apply_trade(json, text, text, integer[], text)", "qe_apply(json, text)", "qe_whoami()",
        "qe_apply_approval(json, text, text, integer[], text)", "qe_approval_payload(approval_request)",
        "qe_apply_limit(json, text, text, integer[], text)",
        "qe_apply_one(json, text, text, integer[], text)", "qe_book_id(text)",
        "qe_check_author(jsonb)", "qe_usable_approval(text, text, text, text)",
        "qe_log_change(json, text, text, text, integer, integer, text, text)",
        "qe_admin_create_user(text, text, text, text, text[])",
        "qe_admin_deactivate_user(text)", "qe_admin_upsert_book(text, text)",
        "qe_admin_upsert_counterparty(text, text, text, boolean)", "qe_audit_immutable()",
    ]  # fmt: skip
    for fn in functions:
        out.append(f"ALTER FUNCTION {fn} OWNER TO qe_owner")
        out.append(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
    # Called by policies and by the app: everything else stays internal.
    for fn in ("qe_role()", "qe_can_read_book(integer)", "qe_apply(json, text)", "qe_whoami()",
               "qe_trade_payload(trade)",
               "qe_admin_create_user(text, text, text, text, text[])",
               "qe_admin_deactivate_user(text)", "qe_admin_upsert_book(text, text)",
               "qe_admin_upsert_counterparty(text, text, text, boolean)"):  # fmt: skip
        out.append(f"GRANT EXECUTE ON FUNCTION {fn} TO qe_app")
    return out


def execute(bind: Any, statements: list[str]) -> None:
    """Run ``statements`` on the migration's connection through the DB-API cursor, so the
    driver never treats PL/pgSQL's ``%`` placeholders as bind parameters."""
    cur = bind.connection.dbapi_connection.cursor()
    try:
        for statement in statements:
            cur.execute(statement)
    finally:
        cur.close()


def install_statements() -> list[str]:
    """SQL statements, in order, that install the central security model."""
    return [_roles_sql(), *_functions_sql(), *_security_sql()]


def uninstall_statements() -> list[str]:
    """Reverse of :func:`install_statements` (policies and triggers go with their tables)."""
    return [
        "DROP FUNCTION IF EXISTS qe_admin_upsert_counterparty(text, text, text, boolean)",
        "DROP FUNCTION IF EXISTS qe_admin_upsert_book(text, text)",
        "DROP FUNCTION IF EXISTS qe_admin_deactivate_user(text)",
        "DROP FUNCTION IF EXISTS qe_admin_create_user(text, text, text, text, text[])",
        "DROP FUNCTION IF EXISTS qe_whoami()",
        "DROP FUNCTION IF EXISTS qe_apply(json, text)",
        "DROP FUNCTION IF EXISTS qe_apply_trade(json, text, text, integer[], text)",
        "DROP FUNCTION IF EXISTS qe_apply_approval(json, text, text, integer[], text)",
        "DROP FUNCTION IF EXISTS qe_apply_one(json, text, text, integer[], text)",
        "DROP FUNCTION IF EXISTS qe_log_change(json, text, text, text, integer, integer, text, text)",
        "DROP FUNCTION IF EXISTS qe_usable_approval(text, text, text, text)",
        "DROP FUNCTION IF EXISTS qe_check_author(jsonb)",
        "DROP FUNCTION IF EXISTS qe_book_id(text)",
        "DROP FUNCTION IF EXISTS qe_apply_limit(json, text, text, integer[], text)",
        "DROP FUNCTION IF EXISTS qe_approval_payload(approval_request)",
        "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
        "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
        "DROP FUNCTION IF EXISTS qe_audit_immutable()",
        "DROP FUNCTION IF EXISTS qe_audit_append(text, text, text, text, jsonb, jsonb, jsonb, text)",
        "DROP FUNCTION IF EXISTS qe_trade_payload(trade)",
        "DROP FUNCTION IF EXISTS qe_is_admin()",
        "DROP FUNCTION IF EXISTS qe_can_read_book(integer)",
        "DROP FUNCTION IF EXISTS qe_role()",
    ]
