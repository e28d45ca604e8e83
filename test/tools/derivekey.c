/* test/tools/derivekey.c: print the master key derived from a cluster secret file (raw 32 bytes), for tests of skfused --key-fd. */
#include <stdio.h>
#include <unistd.h>

#include "conf.h"

int main(int argc, char **argv)
{
	struct sk_conf_err err = { 0 };
	struct sk_key k;
	char buf[512];

	if (argc != 2) {
		fprintf(stderr, "usage: derivekey SECRET_FILE > KEY\n");
		return 2;
	}
	if (sk_conf_load_secret(argv[1], &k, &err) < 0) {
		fprintf(stderr, "derivekey: %s\n", sk_conf_err_str(&err, buf, sizeof(buf)));
		return 1;
	}
	return write(1, k.b, sizeof(k.b)) == (ssize_t)sizeof(k.b) ? 0 : 1;
}
