/* libsk/modarch.h: module archives: a module's folder (userconfig.json, bin/, anything else it needs) as one tar or zip file, installed and packed (libarchive). */
#ifndef SK_MODARCH_H
#define SK_MODARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

/*
 * A module archive holds the files of one module folder: userconfig.json and bin/ with the
 * scripts it lists, at the top of the archive or inside one top folder (`tar czf web.tgz web/`).
 * tar (ustar, pax, GNU) or zip, compressed or not (gzip, bzip2, xz, zstd, as libarchive reads).
 *
 * Installing refuses, with the entry and the rule in err (file = the archive, path = the entry):
 * anything but regular files and folders (symbolic and hard links, devices, FIFOs, sockets),
 * absolute names, "." or ".." components, empty components, control characters, names deeper
 * than SK_MODARCH_MAX_DEPTH or longer than SK_MODARCH_MAX_NAME, an entry twice, more than
 * SK_MODARCH_MAX_ENTRIES entries, a file over SK_MODARCH_MAX_FILE bytes or SK_MODARCH_MAX_TOTAL in
 * all (counted as read, not as the header says), an archive file that is not a regular file
 * or larger than SK_MODARCH_MAX_TOTAL, a userconfig.json that is missing or invalid, a script it
 * lists that is not in bin/ as an executable file, and (with a cluster) a module that does not
 * fit the cluster (sk_conf_module_check). Files get mode 0755 when the archive gave them any
 * execute bit, else 0644; folders 0755; the owner is the caller; set-id bits never.
 *
 * Entries are written only beneath a fresh private folder of modules_dir
 * (".install-XXXXXX", which the agent ignores), each component opened with O_NOFOLLOW and
 * each file created with O_EXCL, so no entry can write anywhere else. The module then appears
 * at modules_dir/NAME in one rename (with replace: exchanged with the installed one, which is
 * then removed). On any error the private folder is removed and nothing else has changed.
 */
#define SK_MODARCH_MAX_ENTRIES 1024
#define SK_MODARCH_MAX_FILE (16u << 20)
#define SK_MODARCH_MAX_TOTAL (64u << 20)
#define SK_MODARCH_MAX_DEPTH 8
#define SK_MODARCH_MAX_NAME 512

/*
 * Install archive into modules_dir (created if missing, its parent must exist). cluster may be
 * NULL (no cluster check). replace: an installed module of that name is replaced; otherwise it
 * is an error (-EEXIST). 0 with the module's name in name[SK_CONF_NAME_LEN], or -errno with err.
 */
int sk_modarch_install(const char *archive, const char *modules_dir,
		       const struct sk_cluster *cluster, bool replace, char *name,
		       struct sk_conf_err *err);

/*
 * Pack the module folder module_dir into out (a new file: -EEXIST if it exists; gzip'd pax tar,
 * entries named from the folder's top, owner 0:0, modes as install gives them). The folder must
 * hold a valid userconfig.json and only regular files and folders. 0, or -errno with err.
 */
int sk_modarch_pack(const char *module_dir, const char *out, struct sk_conf_err *err);

/*
 * Remove the installed module modules_dir/name (a module name: [a-z0-9_-], 1..31): moved aside
 * in one rename, then deleted. 0, or -errno with err (-ENOENT: not installed).
 */
int sk_modarch_remove(const char *modules_dir, const char *name, struct sk_conf_err *err);

#endif
