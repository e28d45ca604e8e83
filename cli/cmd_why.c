/* cli/cmd_why.c: skctl why (transitions in plain words, with the time of each phase) and skctl log [-f]. */
#include "skctl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cmd_why(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;
	json_object *arr;
	size_t n = 0;

	if (skctl_call(o, verb, &rep))
		return 1;
	if (o->json) {
		printf("%s\n", json_object_to_json_string_ext(rep.data, JSON_C_TO_STRING_PRETTY));
		sk_ctl_reply_free(&rep);
		return 0;
	}
	if (json_object_object_get_ex(rep.data, "transitions", &arr) &&
	    json_object_is_type(arr, json_type_array))
		n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(arr, i);
		time_t at = (time_t)(sk_ctl_json_u64(t, "at_ms", 0) / 1000);
		struct tm tm;
		char ts[32];

		gmtime_r(&at, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
		printf("%s  %-8s %s -> %s: %s\n", ts, sk_ctl_json_str(t, "module", "?"),
		       sk_ctl_json_str(t, "from", "?"), sk_ctl_json_str(t, "to", "?"),
		       sk_ctl_json_str(t, "words", ""));
	}
	if (!n)
		printf("no transition recorded on %s yet\n", sk_ctl_json_str(rep.data, "node", "this node"));
	sk_ctl_reply_free(&rep);
	return 0;
}

/*
 * log -f: the module log is a file on this node (the agent said where); follow it from its end,
 * through rotations (module.log -> module.log.1: a new inode, or a shorter file), 64 KiB per
 * read, every 200 ms, until Ctrl-C.
 */
static int follow(const char *path)
{
	static char buf[65536];
	struct stat st, now;
	int fd = -1;
	off_t pos = 0;

	for (;;) {
		if (fd < 0) {
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 && errno != ENOENT) {
				char what[1200];

				snprintf(what, sizeof(what), "cannot read %s: %s", path, strerror(errno));
				skctl_fail(what, "run skctl as root on the node that holds the log");
				return 1;
			}
			if (fd >= 0 && fstat(fd, &st) == 0)
				pos = pos < 0 ? 0 : st.st_size; /* first open: from the end */
		}
		if (fd >= 0) {
			ssize_t n;

			while ((n = pread(fd, buf, sizeof(buf), pos)) > 0) {
				/* as every text skctl shows (libsk/ctl.c): no escape reaches the terminal */
				sk_text_clean(buf, (size_t)n, "\t\n");
				fwrite(buf, 1, (size_t)n, stdout);
				pos += n;
			}
			fflush(stdout);
			/* rotated or truncated: read the new file from its start */
			if (stat(path, &now) < 0 || now.st_ino != st.st_ino || now.st_size < pos) {
				close(fd);
				fd = -1;
				pos = -1;
				continue;
			}
		}
		usleep(200 * 1000);
	}
}

int cmd_log(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;
	json_object *arr;
	char path[1024];

	if (skctl_call(o, verb, &rep))
		return 1;
	if (json_object_object_get_ex(rep.data, "lines", &arr) &&
	    json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			printf("%s\n", json_object_get_string(json_object_array_get_idx(arr, i)));
	snprintf(path, sizeof(path), "%s", sk_ctl_json_str(rep.data, "path", ""));
	sk_ctl_reply_free(&rep);
	if (!o->follow)
		return 0;
	if (!path[0]) {
		skctl_fail("the agent did not say where the log is", "skctl log -m MODULE without -f");
		return 1;
	}
	fflush(stdout);
	fprintf(stderr, "skctl: following %s (Ctrl-C to stop)\n", path);
	return follow(path);
}
