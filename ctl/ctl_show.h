/* ctl_show.h — logagentctl's tables: `stats` (the /stats document for a human) and `clients` (the top
 * senders). They read the documents with ctl_path, so a key an older or newer agent lacks shows as "-". */
#ifndef LOGAGENT_CTL_SHOW_H
#define LOGAGENT_CTL_SHOW_H

#include <jansson.h>
#include <stdio.h>

/* Writes the /stats document `stats` as a sectioned table; `where` names the socket in the heading. */
void ctl_show_stats(FILE *out, json_t *stats, const char *where);

/* Writes the /stats/clients document as one row per client, then the tracked/evicted totals. Returns 0, or -1
 * when out of memory (reported on stderr). */
int ctl_show_clients(FILE *out, json_t *clients);

#endif
