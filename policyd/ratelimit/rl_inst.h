/*
 * rl_inst: what each message (policy "instance") has been counted for
 * already, so a message counts once however many requests it makes.
 * Owns: a bounded map instance -> (counter key, units counted), oldest
 * instances forgotten first (at most max, none older than ttl_ms).
 * Leaves: what to count (rl_engine).
 */
#ifndef SLUICE_RL_INST_H
#define SLUICE_RL_INST_H

#include <stddef.h>

struct rl_inst;

struct rl_inst *rl_inst_new(size_t max, long long ttl_ms);
void rl_inst_free(struct rl_inst **m);

/* rl_inst_counted - units counted for (instance, key) so far; 0 if none. */
long long rl_inst_counted(struct rl_inst *m, const char *instance, const char *key, long long now_ms);
/* rl_inst_add - count units more for (instance, key). */
void rl_inst_add(struct rl_inst *m, const char *instance, const char *key, long long units,
		 long long now_ms);
/* rl_inst_size - instances remembered (tests). */
size_t rl_inst_size(const struct rl_inst *m);

#endif
