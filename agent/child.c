/* agent/child.c: a child process of the agent (skfused, a module script) and its output, line by line into the module log. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The handles live in the child's own struct, not in the module, so the next child can start
 * while this one's pipe is still closing; it is freed once both handles are closed.
 */

static void on_closed(uv_handle_t *h)
{
	struct agent_child *c = h->data;

	if (--c->open == 0)
		free(c);
}

void agent_child_close_out(struct agent_child *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->out))
		uv_close((uv_handle_t *)&c->out, on_closed);
}

void agent_child_close_proc(struct agent_child *c)
{
	uv_close((uv_handle_t *)&c->proc, on_closed);
}

void agent_child_flush(struct agent_child *c)
{
	if (c->n)
		agent_mod_log_raw(c->m, c->tag, c->buf, c->n);
	c->n = 0;
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	struct agent_child *c = h->data;

	(void)s;
	b->base = c->buf + c->n;
	b->len = sizeof(c->buf) - c->n;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct agent_child *c = st->data;
	char *nl;

	(void)b;
	if (nread < 0) {
		if (c->tail_at_eof)
			agent_child_flush(c);
		agent_child_close_out(c);
		return;
	}
	c->n += (size_t)nread;
	while ((nl = memchr(c->buf, '\n', c->n))) {
		size_t l = (size_t)(nl - c->buf);

		if (c->line)
			c->line(c, c->buf, l);
		else
			agent_mod_log_raw(c->m, c->tag, c->buf, l);
		memmove(c->buf, nl + 1, c->n - l - 1);
		c->n -= l + 1;
	}
	if (c->n == sizeof(c->buf)) /* an overlong line is logged in pieces */
		agent_child_flush(c);
}

struct agent_child *agent_child_new(struct agent_mod *m, size_t size, const char *tag,
				    uv_stdio_container_t io[3], int *wfd, int *err)
{
	struct agent_child *c;
	int pfd[2];

	*err = 0;
	if (size < sizeof(*c) || !(c = calloc(1, size))) {
		*err = -ENOMEM;
		return NULL;
	}
	c->m = m;
	c->tag = tag;
	c->open = 2;
	c->proc.data = c;
	/* one pipe for stdout and stderr: lines stay in order in the module log */
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		*err = -errno;
		free(c);
		return NULL;
	}
	uv_pipe_init(m->a->loop, &c->out, 0);
	uv_pipe_open(&c->out, pfd[0]);
	c->out.data = c;
	io[0].flags = UV_IGNORE;
	io[1].flags = UV_INHERIT_FD;
	io[1].data.fd = pfd[1];
	io[2].flags = UV_INHERIT_FD;
	io[2].data.fd = pfd[1];
	*wfd = pfd[1];
	return c;
}

void agent_child_drop(struct agent_child *c)
{
	c->open = 1; /* only the pipe handle exists: on_closed frees c */
	uv_close((uv_handle_t *)&c->out, on_closed);
}

int agent_child_spawn(struct agent_child *c, uv_process_options_t *o, int wfd)
{
	int rc = uv_spawn(c->m->a->loop, &c->proc, o);

	close(wfd);
	if (rc < 0) {
		agent_child_close_proc(c);
		agent_child_close_out(c);
		return rc;
	}
	return 0;
}

void agent_child_read(struct agent_child *c)
{
	uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
}
