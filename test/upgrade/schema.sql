-- The extension's objects as the catalogs hold them: columns, constraints,
-- indexes, triggers, views, functions (with their bodies and settings),
-- privileges and comments.  A fresh install and an upgraded database must
-- print the same lines.
\pset footer off
CREATE TEMP VIEW member AS
SELECT d.classid, d.objid FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'wallet');
SELECT 'extension', extname, extversion, extrelocatable, array_length(extconfig, 1) FROM pg_extension WHERE extname = 'wallet';
SELECT 'relation', c.oid::regclass::text, c.relkind, c.reloptions, c.relacl, obj_description(c.oid, 'pg_class'), c.relreplident
  FROM pg_class c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid ORDER BY 2;
SELECT 'column', a.attrelid::regclass::text, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
	pg_get_expr(d.adbin, d.adrelid), a.attacl, col_description(a.attrelid, a.attnum)
  FROM pg_attribute a JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY 2, 4;
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.conrelid ORDER BY 2, 3;
SELECT 'index', i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid ORDER BY 2, 3;
SELECT 'trigger', t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
  FROM pg_trigger t JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
 WHERE NOT t.tgisinternal ORDER BY 2, 3;
SELECT 'view', c.oid::regclass::text, pg_get_viewdef(c.oid)
  FROM pg_class c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid WHERE c.relkind = 'v' ORDER BY 2;
SELECT 'function', p.oid::regprocedure::text, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid),
	p.prosecdef, p.provolatile, p.proparallel, p.proisstrict, p.proconfig, p.proacl, md5(p.prosrc),
	obj_description(p.oid, 'pg_proc')
  FROM pg_proc p JOIN member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid ORDER BY 2;
SELECT 'type', t.oid::regtype::text, obj_description(t.oid, 'pg_type')
  FROM pg_type t JOIN member m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid ORDER BY 2;
SELECT 'schema', n.nspname, n.nspacl, obj_description(n.oid, 'pg_namespace')
  FROM pg_namespace n JOIN member m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid ORDER BY 2;
SELECT 'sequence', s.seqrelid::regclass::text, s.seqincrement, s.seqmin, s.seqmax
  FROM pg_sequence s JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = s.seqrelid ORDER BY 2;
SELECT 'event trigger', e.evtname, e.evtevent, e.evtenabled, e.evttags
  FROM pg_event_trigger e JOIN member m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid ORDER BY 2;
SELECT 'objects', count(*) FROM member;
