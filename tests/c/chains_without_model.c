/*
 * A C host that needs no model: chains that mix llama.cpp's samplers with
 * every family of ours, applied to synthetic vocabularies, cloned, copied,
 * reset and freed, plus the accessors. tests/c_example.rs runs it under
 * valgrind (zero errors, no definitely lost bytes) with each SIMD kernel.
 *
 *   chains_without_model [STEPS]
 *
 * Logits are finite or -inf (valgrind's vector compares treat NaN unlike
 * the hardware, so NaN cases belong to the native tests).
 */
#include "entropix_sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_VOCAB 4096

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned long long next_u64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float uniform(void) {
    return (float) ((next_u64() >> 11) * (1.0 / 9007199254740992.0));
}

static int fail(const char *what, int step) {
    fprintf(stderr, "chains_without_model: step %d: %s (%s)\n", step, what, entropix_last_error());
    return 1;
}

/* One of our samplers by index, at its default parameters. */
static struct llama_sampler *ours(int which) {
    switch (which) {
    case 0: { entropix_entropix_params p = entropix_entropix_default_params(); return entropix_sampler_init_entropix(&p); }
    case 1: { entropix_four_mode_params p = entropix_four_mode_default_params(); return entropix_sampler_init_four_mode(&p); }
    case 2: { entropix_alpha_params p = entropix_alpha_default_params(); return entropix_sampler_init_alpha(&p); }
    case 3: { entropix_dirichlet_params p = entropix_dirichlet_default_params(); return entropix_sampler_init_dirichlet(&p); }
    case 4: { entropix_mirostat_params p = entropix_mirostat_default_params(); return entropix_sampler_init_mirostat(&p); }
    case 5: { entropix_mirostat_v2_params p = entropix_mirostat_v2_default_params(); return entropix_sampler_init_mirostat_v2(&p); }
    case 6: { entropix_dist_params p = entropix_dist_default_params(); return entropix_sampler_init_dist(&p); }
    default: return entropix_sampler_init_greedy();
    }
}

/* Filters of ours placed before the selecting sampler. */
static struct llama_sampler *our_filter(int which) {
    switch (which) {
    case 0: { entropix_penalties_params p = entropix_penalties_default_params(); p.penalty_repeat = 1.3f; return entropix_sampler_init_penalties(&p); }
    case 1: { entropix_repetition_decay_params p = entropix_repetition_decay_default_params(); return entropix_sampler_init_repetition_decay(&p); }
    case 2: { entropix_top_p_params p = entropix_top_p_default_params(); return entropix_sampler_init_top_p(&p); }
    case 3: { entropix_min_p_params p = entropix_min_p_default_params(); return entropix_sampler_init_min_p(&p); }
    case 4: { entropix_typical_params p = entropix_typical_default_params(); p.p = 0.9f; return entropix_sampler_init_typical(&p); }
    default: { entropix_dynamic_temperature_params p = entropix_dynamic_temperature_default_params(); return entropix_sampler_init_dynamic_temperature(&p); }
    }
}

int main(int argc, char **argv) {
    const int steps = argc > 1 ? atoi(argv[1]) : 400;
    llama_token_data *data = malloc(sizeof(llama_token_data) * N_VOCAB);
    char json[256];
    if (data == NULL) {
        return 1;
    }
    for (int step = 0; step < steps; step++) {
        const int n = 1 + (int) (next_u64() % N_VOCAB);
        const int kind = (int) (next_u64() % 4);
        for (int i = 0; i < n; i++) {
            float logit = 4.0f * (uniform() - 0.5f) * (kind == 3 ? 10.0f : 1.0f);
            if (kind == 1 && uniform() < 0.9f) {
                logit = -INFINITY;
            }
            if (kind == 2) {
                logit = (float) (n - i) * 0.01f; /* descending */
            }
            data[i].id = i;
            data[i].logit = logit;
            data[i].p = 0.0f;
        }
        data[(int) (next_u64() % (unsigned) n)].logit = 20.0f;

        struct llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
        if (step % 3 == 0) {
            llama_sampler_chain_add(chain, llama_sampler_init_top_k(40));
            /* Masks the top token behind a stale `sorted` flag. */
            llama_logit_bias bias = { (llama_token) 0, -INFINITY };
            for (int i = 0; i < n; i++) {
                if (data[i].logit == 20.0f) {
                    bias.token = data[i].id;
                }
            }
            llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(N_VOCAB, 1, &bias));
        }
        struct llama_sampler *filter = our_filter(step % 6);
        struct llama_sampler *selector = ours(step % 8);
        if (filter == NULL || selector == NULL) {
            return fail("a default sampler was not created", step);
        }
        llama_sampler_chain_add(chain, filter);
        llama_sampler_chain_add(chain, selector);

        for (int t = 0; t < 3; t++) {
            llama_token_data_array arr = { data, (size_t) n, -1, step % 5 == 0 };
            llama_sampler_apply(chain, &arr);
            if (arr.selected < 0 || (size_t) arr.selected >= arr.size) {
                return fail("nothing selected", step);
            }
            if (!isfinite(arr.data[arr.selected].logit)) {
                return fail("a masked or non-finite token was selected", step);
            }
            llama_sampler_accept(chain, arr.data[arr.selected].id);
            /* The chain reorders and rescales in place: keep the ids in range. */
            for (int i = 0; i < n; i++) {
                data[i].id = i;
            }
        }
        size_t len = entropix_sampler_state_json(selector, json, sizeof json);
        if (len == 0 || json[0] != '{') {
            return fail("state_json", step);
        }
        struct llama_sampler *copy = llama_sampler_clone(chain);
        if (copy == NULL) {
            return fail("clone", step);
        }
        llama_sampler_reset(copy);
        llama_sampler_free(copy);
        llama_sampler_free(chain);
    }
    /* Errors are per thread, cleared by a successful call. */
    entropix_temperature_params bad = entropix_temperature_default_params();
    bad.temp = NAN;
    if (entropix_sampler_init_temperature(&bad) != NULL || entropix_last_error()[0] == '\0') {
        return fail("invalid temperature accepted", steps);
    }
    char small[8];
    size_t full = entropix_last_error_copy(small, sizeof small);
    if (full < sizeof small || small[sizeof small - 1] != '\0') {
        return fail("last_error_copy", steps);
    }
    free(data);
    printf("chains_without_model: %d steps ok\n", steps);
    return 0;
}
