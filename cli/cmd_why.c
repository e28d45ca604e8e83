/* cli/cmd_why.c: skctl why (transitions in plain words, with the time of each phase) and skctl log. */
#include "skctl.h"

#include <stdio.h>
#include <time.h>

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

int cmd_log(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;
	json_object *arr;

	if (skctl_call(o, verb, &rep))
		return 1;
	if (json_object_object_get_ex(rep.data, "lines", &arr) &&
	    json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			printf("%s\n", json_object_get_string(json_object_array_get_idx(arr, i)));
	sk_ctl_reply_free(&rep);
	return 0;
}
