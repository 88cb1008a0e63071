--! Previous: sha1:44d885afff2e3c6b95c44eeabe06accbc89c2c52
--! Hash: sha1:fe8da1ab84b7b8a4949a4d2fcd0a63c254c8edbc
--! Message: sync oauth login

/*
 * Aleph's OAuth login in one call, handle_oauth without the token parsing and
 * the admin rules: load or create the user, refuse a deleted, blocked or
 * non-user role, store a changed email, then sync the token's groups through
 * sync_role_memberships_by_foreign_id(). Everything happens in the caller's
 * transaction: an error anywhere, in the group list too, leaves no user
 * created and no email changed.
 *
 * The user is created race-free. Aleph's load_or_create checks, then
 * inserts, so the second of two first logins fails on role_foreign_id_key.
 * Here the user is looked up first (a returning user's login then writes
 * nothing, not even a sequence value) and only when absent inserted with
 * INSERT ... ON CONFLICT (foreign_id) DO NOTHING; a login that loses the race
 * reads the winner's row in a fresh statement, which READ COMMITTED lets it
 * see. Under REPEATABLE READ and SERIALIZABLE that row is newer than the
 * snapshot: PostgreSQL refuses the insert with 40001, and so does this
 * function should the row still be out of sight. Retry the whole transaction.
 *
 * The member lock (the advisory lock sync_role_memberships() takes) is taken
 * as soon as the id is known, before the role row is read for the checks
 * and updated. Concurrent logins of one user therefore run one after
 * another and the last to commit sets both the email and the groups; and the
 * order is always the member lock, then the role row, the order an app's own
 * update of the row after the call (is_admin) follows too, so that the two
 * cannot deadlock.
 *
 * A new user gets what Aleph gives it: type 'user'; name = member_name, else
 * the email, else the foreign id ('' counts as absent, as with Python's
 * `or`); the email when given; the booleans false; created_at and updated_at
 * now, in UTC. An existing user's email is replaced when a non-empty,
 * different one is given, with updated_at, as Aleph's ORM does. Nothing else
 * is written, is_admin included: the admin rules stay in the app.
 *
 * Errors (nothing is changed, no role is created): 22004 a NULL
 * member_foreign_id, group_foreign_ids or managed_prefix; 22023 an empty
 * member_foreign_id; 22001 one longer than role.foreign_id allows; RS001 a
 * soft-deleted member; RS006 a blocked member; RS003 a member that is not a
 * user; and every error sync_role_memberships_by_foreign_id() raises for the
 * group list. Volatile: it writes.
 */
create or replace function public.sync_oauth_login(
  member_foreign_id text,
  member_name text,
  member_email text,
  group_foreign_ids text[],
  managed_prefix text default 'group:',
  out member_id integer,
  out member_created boolean,
  out added integer[],
  out removed integer[],
  out created integer[],
  out skipped integer[]
)
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_email text := nullif(member_email, '');
  v_max_length integer;
  v_deleted boolean;
  v_blocked boolean;
  v_type text;
  v_stored_email text;
begin
  if member_foreign_id is null or group_foreign_ids is null or managed_prefix is null then
    raise exception using errcode = '22004',
      message = format('sync_oauth_login: %s must not be null',
                       case when member_foreign_id is null then 'member_foreign_id'
                            when group_foreign_ids is null then 'group_foreign_ids'
                            else 'managed_prefix' end),
      hint = 'Pass an empty array to remove every managed membership; pass '''' to manage every group. '
             'member_name and member_email may be NULL.';
  end if;
  if member_foreign_id = '' then
    raise exception using errcode = '22023',
      message = 'sync_oauth_login: member_foreign_id must not be empty';
  end if;
  -- The limit is role.foreign_id's own: varchar(2048) in Aleph.
  select a.atttypmod - 4 into v_max_length
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role'::regclass and a.attname = 'foreign_id' and a.atttypmod > 4;
  if length(member_foreign_id) > v_max_length then
    raise exception using errcode = '22001',
      message = format('member foreign id longer than %s characters: %s… (%s characters)',
                       v_max_length, left(member_foreign_id, 40), length(member_foreign_id)),
      hint = 'role.foreign_id cannot hold it; shorten the subject at the identity provider.';
  end if;

  member_created := false;
  select r.id into member_id from public.role r where r.foreign_id = member_foreign_id;
  if member_id is null then
    insert into public.role (foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester,
                             created_at, updated_at)
    values (member_foreign_id, coalesce(nullif(member_name, ''), v_email, member_foreign_id), v_email,
            'user', false, false, false, false, now() at time zone 'utc', now() at time zone 'utc')
    on conflict (foreign_id) do nothing
    returning id into member_id;
    member_created := member_id is not null;
    if not member_created then
      -- A concurrent login created it; a fresh snapshot sees its commit.
      select r.id into member_id from public.role r where r.foreign_id = member_foreign_id;
      if member_id is null then
        raise exception using errcode = '40001',
          message = format('member role %L was created by a concurrent login after this transaction''s snapshot',
                           member_foreign_id),
          hint = 'Retry the whole transaction: a fresh snapshot finds the role.';
      end if;
    end if;
  end if;

  -- The member lock, held until commit (see the comment above the function).
  perform pg_catalog.pg_advisory_xact_lock(1919904869, member_id);

  if not member_created then
    select r.deleted_at is not null, r.is_blocked, r.type::text, r.email
      into v_deleted, v_blocked, v_type, v_stored_email
      from public.role r where r.id = member_id;
    if v_deleted or v_deleted is null then
      raise exception using errcode = 'RS001',
        message = format('member role %L %s', member_foreign_id,
                         case when v_deleted then 'is soft-deleted' else 'does not exist' end),
        hint = 'A soft-deleted role cannot log in; an admin restores it by clearing deleted_at.';
    end if;
    if v_blocked then
      raise exception using errcode = 'RS006',
        message = format('member role %L is blocked', member_foreign_id),
        hint = 'An admin blocked this account (role.is_blocked); only an admin can unblock it.';
    end if;
    if v_type <> 'user' then
      raise exception using errcode = 'RS003',
        message = format('member role %L is not a user (%s)', member_foreign_id, v_type),
        hint = 'Only roles of type ''user'' log in; the identity provider''s subject collides with a group or system role.';
    end if;
    if v_email is not null and v_email is distinct from v_stored_email then
      update public.role r
         set email = v_email, updated_at = now() at time zone 'utc'
       where r.id = member_id;
    end if;
  end if;

  select s.added, s.removed, s.created, s.skipped
    into added, removed, created, skipped
    from public.sync_role_memberships_by_foreign_id(member_foreign_id, group_foreign_ids, managed_prefix) s;
end;
$$;
comment on function public.sync_oauth_login(text, text, text, text[], text) is
  'Aleph''s OAuth login in one call: creates the user race-free or stores its changed email, refuses a blocked (RS006) or deleted (RS001) one, then syncs its groups by foreign id; returns (member_id, member_created, added, removed, created, skipped).';

revoke all on function public.sync_oauth_login(text, text, text, text[], text) from public;
grant execute on function public.sync_oauth_login(text, text, text, text[], text) to :ROLESYNC_APP_ROLE;
-- Storing a changed email needs these too (the function runs as its caller).
grant update (email, updated_at) on table public.role to :ROLESYNC_APP_ROLE;
