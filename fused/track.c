/* fused/track.c: persistent replication state (peer outdated, consistency, generation), written crash-safely. */
#include "fused.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int mkdirs(const char *path)
{
	char d[PATH_MAX];

	snprintf(d, sizeof(d), "%s", path);
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(d, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * State file: "key=value" lines. A missing file means a first start: the peer
 * is not known to be in sync, this node's data is not known to be consistent
 * with any primary (both become true only after a full resync).
 */
int fused_state_load(struct fused *f)
{
	char path[PATH_MAX + 16], line[128];
	FILE *fp;
	int rc = mkdirs(f->state_dir);

	if (rc < 0)
		return rc;
	f->peer_in_sync = false;
	f->consistent = false;
	f->generation = 1;
	snprintf(path, sizeof(path), "%s/state", f->state_dir);
	fp = fopen(path, "re");
	if (!fp)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long long v;

		if (sscanf(line, "peer_in_sync=%llu", &v) == 1)
			f->peer_in_sync = v != 0;
		else if (sscanf(line, "consistent=%llu", &v) == 1)
			f->consistent = v != 0;
		else if (sscanf(line, "generation=%llu", &v) == 1)
			f->generation = v;
		else if (sscanf(line, "ro_mounted=%llu", &v) == 1)
			f->ro_mounted = v != 0;
	}
	fclose(fp);
	return 0;
}

/* tmp + fsync + rename + fsync(dir): after a crash the file is the old or the new one. */
static int save_locked(struct fused *f)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16], buf[256];
	int fd, dfd, n, rc = 0;

	snprintf(path, sizeof(path), "%s/state", f->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/state.tmp", f->state_dir);
	n = snprintf(buf, sizeof(buf),
		     "role=%s\npeer_in_sync=%d\nconsistent=%d\ngeneration=%llu\nro_mounted=%d\n",
		     f->role == FUSED_PRIMARY ? "primary" : "secondary", f->peer_in_sync,
		     f->consistent, (unsigned long long)f->generation, f->ro_mounted);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* A short write would have left errno stale: sk_write_all says what happened. */
	rc = sk_write_all(fd, buf, (size_t)n);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	dfd = open(f->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (rc < 0)
		sk_err("cannot save state in %s: %s", f->state_dir, strerror(-rc));
	return rc;
}

int fused_state_save(struct fused *f)
{
	int rc;

	pthread_mutex_lock(&f->state_mu);
	rc = save_locked(f);
	pthread_mutex_unlock(&f->state_mu);
	return rc;
}

void fused_state_set_in_sync(struct fused *f, bool v)
{
	pthread_mutex_lock(&f->state_mu);
	if (f->peer_in_sync != v) {
		f->peer_in_sync = v;
		if (!v)
			f->generation++; /* our data moves on without the peer */
		save_locked(f);
	}
	pthread_mutex_unlock(&f->state_mu);
}
