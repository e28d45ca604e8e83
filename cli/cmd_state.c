/* cli/cmd_state.c: skctl state: the modules of this node in an aligned table, JSON, or an exit code (-lq). */
#include "skctl.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* -lq when the agent cannot be asked: not a state, so not 0..4 */
#define EXIT_UNKNOWN 10

static void ago(uint64_t since_ms, char *out, size_t cap)
{
	struct timespec ts;
	uint64_t now, d;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	d = now > since_ms ? (now - since_ms) / 1000 : 0;
	if (!since_ms)
		snprintf(out, cap, "-");
	else if (d < 120)
		snprintf(out, cap, "%llus", (unsigned long long)d);
	else if (d < 7200)
		snprintf(out, cap, "%llum", (unsigned long long)d / 60);
	else
		snprintf(out, cap, "%lluh", (unsigned long long)d / 3600);
}

static void duration(int64_t s, char *out, size_t cap) /* cap >= 32 */
{
	if (s < 0)
		snprintf(out, cap, "?");
	else if (s < 120)
		snprintf(out, cap, "%llds", (long long)s);
	else if (s < 7200)
		snprintf(out, cap, "%lldm%02llds", (long long)s / 60, (long long)s % 60);
	else
		snprintf(out, cap, "%lldh%02lldm", (long long)s / 3600, (long long)(s / 60) % 60);
}

/*
 * "  web: resync [#########...........]  42.0 %  1.2 GiB / 2.9 GiB  35.1 MiB/s  ETA 48s"
 * The bar is 30 cells, filled in green on a terminal only.
 */
static void progress_line(const struct skctl *o, const struct sk_ctl_mod *m, int w_name)
{
	char bar[31], d[16], t[16], r[16], eta[32];
	double pct = m->rs_total ? 100.0 * (double)m->rs_done / (double)m->rs_total : 0;
	int fill = (int)(pct * 30 / 100);

	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = '\0';
	sk_human_bytes(m->rs_done, d, sizeof(d));
	sk_human_bytes(m->rs_total, t, sizeof(t));
	sk_human_bytes(m->rs_rate, r, sizeof(r));
	duration(m->rs_eta_s, eta, sizeof(eta));
	printf("  %-*s  resync [%s%.*s%s%s] %5.1f %%  %9s / %-9s  %9s/s  ETA %s\n", w_name, m->name,
	       o->color ? "\033[32m" : "", fill, bar, o->color ? "\033[0m" : "", bar + fill, pct, d,
	       t, r, eta);
}

/* The PEER and PEER STATE cells: the peer of a mirror; every other node of a farm, in order
 * ("node2,node3" and "UP,down": down = not heard) */
static void member_cols(const struct sk_ctl_mod *m, char *peer, size_t pcap, char *pst, size_t scap)
{
	size_t a = 0, b = 0;

	if (!m->n_members) {
		snprintf(peer, pcap, "%s", m->peer);
		snprintf(pst, scap, "%s", m->peer_alive ? sk_state_name(m->peer_state) : "unreachable");
		return;
	}
	peer[0] = pst[0] = '\0';
	for (unsigned i = 0; i < m->n_members && a < pcap && b < scap; i++) {
		a += (size_t)snprintf(peer + a, pcap - a, "%s%s", i ? "," : "", m->members[i].node);
		b += (size_t)snprintf(pst + b, scap - b, "%s%s", i ? "," : "", m->members[i].alive ?
				      sk_state_name(m->members[i].state) : "down");
	}
}

int cmd_state(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;
	json_object *mods, *nodes, *cnt;
	static struct sk_ctl_mod m[64];
	static char peer[64][SK_CTL_MAX_MEMBERS * 65];
	static char pst[64][SK_CTL_MAX_MEMBERS * 8 + 16];
	size_t n = 0, w_name = 6, w_peer = 4, w_pst = 10, w_vip = 3;
	char err[128];

	if (skctl_call(o, verb, &rep))
		return o->lq ? EXIT_UNKNOWN : 1;
	if (o->json) {
		printf("%s\n", json_object_to_json_string_ext(rep.data, JSON_C_TO_STRING_PRETTY));
		sk_ctl_reply_free(&rep);
		return 0;
	}
	if (json_object_object_get_ex(rep.data, "modules", &mods) &&
	    json_object_is_type(mods, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(mods) && n < 64; i++) {
			if (sk_ctl_mod_from_json(json_object_array_get_idx(mods, i), &m[n], err,
						 sizeof(err)) < 0) {
				fprintf(stderr, "skctl: unreadable module entry: %s\n", err);
				continue;
			}
			member_cols(&m[n], peer[n], sizeof(peer[n]), pst[n], sizeof(pst[n]));
			if (strlen(m[n].name) > w_name) w_name = strlen(m[n].name);
			if (strlen(peer[n]) > w_peer) w_peer = strlen(peer[n]);
			if (strlen(pst[n]) > w_pst) w_pst = strlen(pst[n]);
			if (strlen(m[n].vip) + 7 > w_vip) w_vip = strlen(m[n].vip) + 7;
			n++;
		}
	}
	if (o->lq) {
		int code = n ? sk_state_exit_code(m[0].state) : EXIT_UNKNOWN;

		sk_ctl_reply_free(&rep);
		return code;
	}
	printf("node %s, cluster %s\n\n", sk_ctl_json_str(rep.data, "node", "?"),
	       sk_ctl_json_str(rep.data, "cluster", "?"));
	if (!n) {
		printf("no module on this node%s\n", o->module ? " by that name" : "");
	} else {
		printf("%-*s  %-6s  %-6s  %-*s  %-*s  %-*s  %-18s  %s\n", (int)w_name, "MODULE",
		       "STATE", "SINCE", (int)w_peer, "PEER", (int)w_pst, "PEER STATE", (int)w_vip,
		       "VIP", "DATA", "STEP");
		for (size_t i = 0; i < n; i++) {
			char since[16], vip[128], data[48];

			ago(m[i].since_ms, since, sizeof(since));
			snprintf(vip, sizeof(vip), "%s%s", m[i].vip[0] ? m[i].vip : "-",
				 m[i].vip[0] ? (m[i].vip_held ? " (held)" : "") : "");
			snprintf(data, sizeof(data), "gen %llu%s", (unsigned long long)m[i].gen,
				 m[i].uptodate ? ", up to date" : ", outdated");
			printf("%-*s  %s%-6s%s  %-6s  %-*s  %-*s  %-*s  %-18s  %s%s\n", (int)w_name,
			       m[i].name, skctl_state_color(o, m[i].state), sk_state_name(m[i].state),
			       skctl_reset(o), since, (int)w_peer, peer[i], (int)w_pst, pst[i], (int)w_vip,
			       vip, data,
			       m[i].busy[0] ? "busy: " : "", m[i].busy[0] ? m[i].busy : "");
		}
	}
	/* reasons on their own lines: they are sentences, not table cells */
	for (size_t i = 0; i < n; i++)
		if (m[i].reason[0])
			printf("  %s: %s\n", m[i].name, m[i].reason);
	/* the data: how the two copies relate, the resync's progress, what was kept aside */
	for (size_t i = 0; i < n; i++) {
		if (m[i].data_words[0])
			printf("  %s: data: %s\n", m[i].name, m[i].data_words);
		if (m[i].resyncing)
			progress_line(o, &m[i], (int)w_name);
		if (m[i].aside[0])
			printf("  %s: kept aside by a forced resync: %s (list.txt inside)\n", m[i].name,
			       m[i].aside);
	}
	if (json_object_object_get_ex(rep.data, "nodes", &nodes) &&
	    json_object_is_type(nodes, json_type_array) && json_object_array_length(nodes)) {
		printf("\n%-12s  %-5s  %-7s  %s\n", "NODE", "ALIVE", "CHANNEL", "LAST HEARD (ms ago, per network)");
		for (size_t i = 0; i < json_object_array_length(nodes); i++) {
			json_object *nd = json_object_array_get_idx(nodes, i), *nets, *v;
			char heard[256] = "";
			size_t k = 0;

			if (json_object_object_get_ex(nd, "last_heard_ms", &nets) &&
			    json_object_is_type(nets, json_type_object)) {
				json_object_object_foreach(nets, net, val) {
					int64_t ms = json_object_get_int64(val);

					if (k < sizeof(heard))
						k += (size_t)snprintf(heard + k, sizeof(heard) - k, "%s%s %s",
								      k ? ", " : "", net, "");
					if (k < sizeof(heard)) {
						if (ms < 0)
							k += (size_t)snprintf(heard + k, sizeof(heard) - k, "never");
						else
							k += (size_t)snprintf(heard + k, sizeof(heard) - k, "%lld",
									      (long long)ms);
					}
				}
			}
			printf("%-12s  %-5s  %-7s  %s\n", sk_ctl_json_str(nd, "name", "?"),
			       json_object_object_get_ex(nd, "alive", &v) && json_object_get_boolean(v) ?
				       "yes" : "NO",
			       json_object_object_get_ex(nd, "channel", &v) && json_object_get_boolean(v) ?
				       "up" : "down",
			       heard);
		}
	}
	if (json_object_object_get_ex(rep.data, "counters", &cnt)) {
		uint64_t refused = 0;

		json_object_object_foreach(cnt, key, val) {
			if (strstr(key, "refused"))
				refused += (uint64_t)json_object_get_int64(val);
		}
		if (refused)
			printf("\nrefused: %llu frames/requests (skctl state --json shows which)\n",
			       (unsigned long long)refused);
	}
	sk_ctl_reply_free(&rep);
	return 0;
}
