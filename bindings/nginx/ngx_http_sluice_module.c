/*
 * ngx_http_sluice_module: exact sliding-window rate limits and lockouts for nginx, decided by
 * the sluice library (include/sluice.h) on a table file that every worker shares.
 *
 * - `sluice_table` (http) reads a policy file and opens the table when the configuration is
 *   loaded, in the master process: workers inherit the mapping through fork, so they need no
 *   permission on the file. `nginx -t` attaches read-only (or, when the file does not exist
 *   yet, parses the policy and checks the file's directory) and the `-s` signaller only
 *   parses: neither creates anything.
 * - A PREACCESS handler checks each client request once (the decision is kept in a hidden
 *   variable's slot, which internal redirects do not reset) and refuses with `sluice_status`.
 * - A header filter writes the rate-limit header lines from the decision's numbers and
 *   records failures or successes of a lockout by the response status.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sluice.h"


#define NGX_HTTP_SLUICE_HEADERS_X_RATELIMIT  0
#define NGX_HTTP_SLUICE_HEADERS_IETF         1
#define NGX_HTTP_SLUICE_HEADERS_OFF          2

#define NGX_HTTP_SLUICE_MAX_KEY              65535


/* A rule's header texts, made once when the table is opened. */
typedef struct {
    ngx_str_t                    policy;       /* "NAME";q=N;w=SECONDS */
    ngx_str_t                    quoted_name;  /* "NAME" */
    ngx_str_t                    limit;        /* N, the X-RateLimit-Limit value */
    uint32_t                     limit_value;  /* N */
} ngx_http_sluice_rule_t;


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    path;         /* the table file, NUL-terminated */
    ngx_str_t                    policy_path;  /* NUL-terminated */
    ngx_str_t                    policy;       /* the policy text, NUL-terminated */
    struct sluice               *sluice;
    ngx_uint_t                   mode;
    ngx_http_sluice_rule_t      *rules;        /* by rule index, as decisions name them */
    ngx_uint_t                   nrules;
} ngx_http_sluice_table_t;


typedef struct {
    ngx_array_t                  tables;       /* of ngx_http_sluice_table_t */
    /* some $sluice_* variable appears in the configuration */
    ngx_flag_t                   variables_used;
    /* the index of the hidden variable whose slot holds a request's context */
    ngx_int_t                    ctx_index;
} ngx_http_sluice_main_conf_t;


typedef struct {
    /* NULL: `sluice off`; NGX_CONF_UNSET_PTR: not set at this level */
    ngx_http_sluice_table_t     *table;
    ngx_str_t                    category_name;
    ngx_int_t                    category;
    ngx_flag_t                   has_lockout;
    ngx_http_complex_value_t    *key;
    ngx_flag_t                   key_is_addr;  /* key is the default $remote_addr */
    ngx_str_t                    sluice_file;  /* where the `sluice` directive is */
    ngx_uint_t                   sluice_line;

    ngx_uint_t                   status_code;
    ngx_uint_t                   headers;
    ngx_flag_t                   dry_run;
    ngx_uint_t                   log_level;

    ngx_array_t                 *failure_statuses;  /* of ngx_uint_t */
    ngx_array_t                 *success_statuses;
    ngx_str_t                    outcome_file; /* where the first of them is */
    ngx_uint_t                   outcome_line;
} ngx_http_sluice_loc_conf_t;


/*
 * One per checked client request, kept across internal redirects (see
 * ngx_http_sluice_get_ctx). The header values are formatted into `numbers`, which the
 * response's header lines then point to.
 */
typedef struct {
    ngx_http_sluice_table_t     *table;
    ngx_int_t                    category;
    ngx_str_t                    key;
    ngx_uint_t                   headers;
    struct sluice_decision       decision;
    unsigned                     checked:1;     /* decision holds a check's answer */
    unsigned                     refused:1;     /* refused with sluice_status */
    unsigned                     dry_refused:1; /* would have been refused (dry run) */
    unsigned                     headers_done:1;
    unsigned                     outcome_done:1;
    u_char                       numbers[4][NGX_INT64_LEN];
} ngx_http_sluice_ctx_t;


static ngx_int_t ngx_http_sluice_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sluice_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_sluice_context_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static int ngx_http_sluice_policy_changed(ngx_conf_t *cf,
    ngx_http_sluice_table_t *t, struct sluice_open_options *options, char *err,
    size_t err_cap);
static void ngx_http_sluice_table_cleanup(void *data);
static ngx_int_t ngx_http_sluice_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_sluice_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_sluice_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sluice_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sluice_table(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sluice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sluice_statuses(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_sluice_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_sluice_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sluice_check_dir(ngx_conf_t *cf,
    ngx_http_sluice_table_t *t);
static ngx_int_t ngx_http_sluice_describe_rules(ngx_conf_t *cf,
    ngx_http_sluice_table_t *t);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_conf_enum_t  ngx_http_sluice_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_sluice_header_styles[] = {
    { ngx_string("x-ratelimit"), NGX_HTTP_SLUICE_HEADERS_X_RATELIMIT },
    { ngx_string("ietf"), NGX_HTTP_SLUICE_HEADERS_IETF },
    { ngx_string("off"), NGX_HTTP_SLUICE_HEADERS_OFF },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_sluice_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_http_sluice_commands[] = {

    { ngx_string("sluice_table"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_sluice_table,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sluice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_sluice,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sluice_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, status_code),
      &ngx_http_sluice_status_bounds },

    { ngx_string("sluice_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, headers),
      &ngx_http_sluice_header_styles },

    { ngx_string("sluice_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, dry_run),
      NULL },

    { ngx_string("sluice_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, log_level),
      &ngx_http_sluice_log_levels },

    { ngx_string("sluice_failure_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_sluice_statuses,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, failure_statuses),
      NULL },

    { ngx_string("sluice_success_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_sluice_statuses,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sluice_loc_conf_t, success_statuses),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sluice_module_ctx = {
    ngx_http_sluice_add_variables,         /* preconfiguration */
    ngx_http_sluice_init,                  /* postconfiguration */

    ngx_http_sluice_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sluice_create_loc_conf,       /* create location configuration */
    ngx_http_sluice_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_sluice_module = {
    NGX_MODULE_V1,
    &ngx_http_sluice_module_ctx,           /* module context */
    ngx_http_sluice_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_SLUICE_VAR_STATUS       0
#define NGX_HTTP_SLUICE_VAR_REMAINING    1
#define NGX_HTTP_SLUICE_VAR_RETRY_AFTER  2

static ngx_http_variable_t  ngx_http_sluice_vars[] = {

    { ngx_string("sluice_status"), NULL, ngx_http_sluice_variable,
      NGX_HTTP_SLUICE_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sluice_remaining"), NULL, ngx_http_sluice_variable,
      NGX_HTTP_SLUICE_VAR_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sluice_retry_after"), NULL, ngx_http_sluice_variable,
      NGX_HTTP_SLUICE_VAR_RETRY_AFTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* The hidden variable whose slot keeps a request's context (ngx_http_sluice_get_ctx). */
static ngx_str_t  ngx_http_sluice_context_name = ngx_string("sluice_internal_context");


/* Indexed by SLUICE_STATUS_*. */
static ngx_str_t  ngx_http_sluice_status_names[] = {
    ngx_string("PASSED"),
    ngx_string("LIMITED"),
    ngx_string("LOCKED"),
    ngx_string("FULL"),
    ngx_string("DRY_RUN_LIMITED")
};

#define NGX_HTTP_SLUICE_N_STATUSES \
    (sizeof(ngx_http_sluice_status_names) / sizeof(ngx_str_t))


static int64_t
ngx_http_sluice_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + (int64_t) tp->msec;
}


static const char *
ngx_http_sluice_status_name(uint8_t status)
{
    if (status < NGX_HTTP_SLUICE_N_STATUSES) {
        return (const char *) ngx_http_sluice_status_names[status].data;
    }

    return "UNKNOWN";
}


/*
 * The key's value. The default key, $remote_addr, is the connection's address text (which
 * the realip module rewrites too): read directly, without evaluating a complex value.
 */
static ngx_int_t
ngx_http_sluice_key(ngx_http_request_t *r, ngx_http_sluice_loc_conf_t *slcf,
    ngx_str_t *key)
{
    if (slcf->key_is_addr) {
        *key = r->connection->addr_text;
        return NGX_OK;
    }

    return ngx_http_complex_value(r, slcf->key, key);
}


/*
 * nginx clears a request's module contexts on an internal redirect (index, try_files,
 * error_page, ...) but keeps its variable slots: the context pointer lives in the slot of a
 * hidden variable of this module, so it is found again after a redirect (the request is
 * charged once) with one load, and without a pool cleanup record to search.
 */
static ngx_inline ngx_http_sluice_ctx_t *
ngx_http_sluice_get_ctx(ngx_http_request_t *r, ngx_http_sluice_main_conf_t *smcf)
{
    return (ngx_http_sluice_ctx_t *) r->main->variables[smcf->ctx_index].data;
}


static ngx_inline void
ngx_http_sluice_set_ctx(ngx_http_request_t *r, ngx_http_sluice_main_conf_t *smcf,
    ngx_http_sluice_ctx_t *ctx)
{
    ngx_http_variable_value_t  *v;

    v = &r->main->variables[smcf->ctx_index];
    v->data = (u_char *) ctx;
    v->len = 0;
    v->valid = 0;
    v->not_found = 1;  /* read as a variable, it is empty */
}


/*
 * The context of an admitted request that nothing reads afterwards (no headers, no
 * variables): it only marks the request as charged. Shared and never written.
 */
static ngx_http_sluice_ctx_t  ngx_http_sluice_admitted = {
    NULL, 0, ngx_null_string, NGX_HTTP_SLUICE_HEADERS_OFF,
    { sizeof(struct sluice_decision), 1, SLUICE_STATUS_PASSED, 0, 0, 0, 0, -1, 0, 0 },
    1, 0, 0, 1, 0, { { 0 } }
};


static ngx_int_t
ngx_http_sluice_handler(ngx_http_request_t *r)
{
    int                           rc;
    int64_t                       now;
    ngx_str_t                     key;
    ngx_uint_t                    numbers_read;
    ngx_http_sluice_ctx_t        *ctx;
    ngx_http_sluice_loc_conf_t   *slcf;
    ngx_http_sluice_main_conf_t  *smcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sluice_module);

    if (slcf->table == NULL) {
        return NGX_DECLINED;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sluice_module);

    if (ngx_http_sluice_get_ctx(r, smcf) != NULL) {
        /* checked before an internal redirect: a request is charged once */
        return NGX_DECLINED;
    }

    if (ngx_http_sluice_key(r, slcf, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (key.len == 0) {
        /* no key, no limit (as limit_req does) */
        return NGX_DECLINED;
    }

    if (key.len > NGX_HTTP_SLUICE_MAX_KEY) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sluice: the value of the key \"%V\" is longer than "
                      "65535 bytes, not limited", &slcf->key->value);
        return NGX_DECLINED;
    }

    now = ngx_http_sluice_now();
    numbers_read = (slcf->headers != NGX_HTTP_SLUICE_HEADERS_OFF
                    || smcf->variables_used);
    rc = 0;

    if (!numbers_read) {
        /*
         * Nothing reads the numbers of an admitted request's decision: the check without
         * them (no counting of the window), and no context of its own. A refusal is rare;
         * its numbers, for the log line, come from a peek, which records nothing.
         */
        rc = sluice_allow(slcf->table->sluice, (int) slcf->category, key.data,
                          key.len, now);

        if (rc == 1) {
            ngx_http_sluice_set_ctx(r, smcf, &ngx_http_sluice_admitted);
            return NGX_DECLINED;
        }
    }

    ctx = ngx_palloc(r->pool, sizeof(ngx_http_sluice_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->table = slcf->table;
    ctx->category = slcf->category;
    ctx->key = key;
    ctx->headers = slcf->headers;
    ctx->checked = 0;
    ctx->refused = 0;
    ctx->dry_refused = 0;
    ctx->headers_done = 0;
    ctx->outcome_done = 0;
    ctx->decision.size = sizeof(struct sluice_decision);

    ngx_http_sluice_set_ctx(r, smcf, ctx);

    if (!numbers_read) {

        if (rc == 0
            && sluice_peek(slcf->table->sluice, (int) slcf->category,
                           key.data, key.len, now, &ctx->decision)
               == SLUICE_OK)
        {
            /* the peek may admit what allow refused (a slot freed since): not here */
            ctx->decision.allowed = 0;
            if (ctx->decision.status == SLUICE_STATUS_PASSED
                || ctx->decision.status == SLUICE_STATUS_DRY_RUN_LIMITED)
            {
                ctx->decision.status = SLUICE_STATUS_LIMITED;
            }

        } else if (rc == 0) {
            ngx_memzero(&ctx->decision, sizeof(struct sluice_decision));
            ctx->decision.size = sizeof(struct sluice_decision);
            ctx->decision.status = SLUICE_STATUS_LIMITED;
            ctx->decision.rule = -1;
        }

        if (rc >= 0) {
            rc = SLUICE_OK;
        }

    } else {
        rc = sluice_check(slcf->table->sluice, (int) slcf->category, key.data,
                          key.len, now, &ctx->decision);
    }

    if (rc != SLUICE_OK) {
        /* cannot happen with a checked configuration; fail open, loudly */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sluice: check in table \"%V\" failed: %s",
                      &slcf->table->name, sluice_strerror(rc));
        return NGX_DECLINED;
    }

    ctx->checked = 1;

    if (ctx->decision.allowed) {
        return NGX_DECLINED;
    }

    if (ctx->decision.rule >= 0 && ctx->decision.status != SLUICE_STATUS_LOCKED) {
        ngx_log_error(slcf->log_level, r->connection->log, 0,
                      "sluice: %s request%s, key \"%V\", table \"%V\", "
                      "category \"%V\", rule %D (%uD per %L ms), "
                      "retry after %uD s",
                      ngx_http_sluice_status_name(ctx->decision.status),
                      slcf->dry_run ? " (dry run)" : "", &key,
                      &slcf->table->name, &slcf->category_name,
                      ctx->decision.rule, ctx->decision.limit,
                      ctx->decision.window_ms, ctx->decision.retry_after);

    } else {
        ngx_log_error(slcf->log_level, r->connection->log, 0,
                      "sluice: %s request%s, key \"%V\", table \"%V\", "
                      "category \"%V\", retry after %uD s",
                      ngx_http_sluice_status_name(ctx->decision.status),
                      slcf->dry_run ? " (dry run)" : "", &key,
                      &slcf->table->name, &slcf->category_name,
                      ctx->decision.retry_after);
    }

    if (slcf->dry_run) {
        ctx->dry_refused = 1;
        return NGX_DECLINED;
    }

    ctx->refused = 1;

    return slcf->status_code;
}


/* Two decimal digits for each of 0..99. */
static const u_char  ngx_http_sluice_digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";


/*
 * Writes the decimal digits of `v` so that they end at `end` (two digits a division) and
 * returns where they begin.
 */
static ngx_inline u_char *
ngx_http_sluice_decimal(u_char *end, int64_t value)
{
    u_char    *p;
    uint64_t   v, two;

    p = end;
    v = (value < 0) ? 0 - (uint64_t) value : (uint64_t) value;

    while (v >= 100) {
        two = v % 100;
        v /= 100;
        p -= 2;
        p[0] = ngx_http_sluice_digit_pairs[2 * two];
        p[1] = ngx_http_sluice_digit_pairs[2 * two + 1];
    }

    if (v >= 10) {
        p -= 2;
        p[0] = ngx_http_sluice_digit_pairs[2 * v];
        p[1] = ngx_http_sluice_digit_pairs[2 * v + 1];

    } else {
        *--p = (u_char) ('0' + v);
    }

    if (value < 0) {
        *--p = '-';
    }

    return p;
}


/*
 * The header lines this module sends, with their lower-case names and hashes (computed
 * once, in ngx_http_sluice_init): a response's lines then only point to them.
 */
#define NGX_HTTP_SLUICE_H_LIMIT      0
#define NGX_HTTP_SLUICE_H_REMAINING  1
#define NGX_HTTP_SLUICE_H_RESET      2
#define NGX_HTTP_SLUICE_H_RETRY      3
#define NGX_HTTP_SLUICE_H_POLICY     4
#define NGX_HTTP_SLUICE_H_RATELIMIT  5

typedef struct {
    ngx_str_t                    name;
    u_char                      *lowcase;
    ngx_uint_t                   hash;
} ngx_http_sluice_header_name_t;

static ngx_http_sluice_header_name_t  ngx_http_sluice_header_names[] = {
    { ngx_string("X-RateLimit-Limit"), (u_char *) "x-ratelimit-limit", 0 },
    { ngx_string("X-RateLimit-Remaining"), (u_char *) "x-ratelimit-remaining", 0 },
    { ngx_string("X-RateLimit-Reset"), (u_char *) "x-ratelimit-reset", 0 },
    { ngx_string("Retry-After"), (u_char *) "retry-after", 0 },
    { ngx_string("RateLimit-Policy"), (u_char *) "ratelimit-policy", 0 },
    { ngx_string("RateLimit"), (u_char *) "ratelimit", 0 }
};


/*
 * The last value of each header this worker formatted, right-aligned in `text`: the limit
 * and the reset time repeat from one request to the next, so they are usually copied, not
 * formatted again.
 */
typedef struct {
    int64_t                      value;
    size_t                       len;      /* 0: nothing formatted yet */
    u_char                       text[NGX_INT64_LEN];
} ngx_http_sluice_number_t;

static ngx_http_sluice_number_t  ngx_http_sluice_last_numbers[4];  /* by header */


/* Sets the name of header line `h` to this module's header `i`. */
static ngx_inline void
ngx_http_sluice_header_name(ngx_table_elt_t *h, ngx_uint_t i)
{
    ngx_http_sluice_header_name_t  *name;

    name = &ngx_http_sluice_header_names[i];

    h->hash = name->hash;
    h->key = name->name;
    h->lowcase_key = name->lowcase;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
}


/*
 * Sets `value` to the decimal text of header `i`'s number, formatted into the context (or
 * copied from the worker's last text of that header when the number is the same).
 */
static ngx_inline void
ngx_http_sluice_number(ngx_http_sluice_ctx_t *ctx, ngx_uint_t i, int64_t n,
    ngx_str_t *value)
{
    u_char                    *end;
    ngx_http_sluice_number_t  *last;

    last = &ngx_http_sluice_last_numbers[i];

    if (last->len == 0 || last->value != n) {
        last->value = n;
        last->len = last->text + NGX_INT64_LEN
                    - ngx_http_sluice_decimal(last->text + NGX_INT64_LEN, n);
    }

    ngx_memcpy(ctx->numbers[i], last->text, NGX_INT64_LEN);

    end = ctx->numbers[i] + NGX_INT64_LEN;
    value->len = last->len;
    value->data = end - last->len;
}


/*
 * Adds the X-RateLimit headers of the decision, and Retry-After when refused (as
 * sluice_headers formats them, but written straight into nginx's header list): the values
 * are formatted into the context, which lives as long as the request.
 */
static ngx_int_t
ngx_http_sluice_add_x_ratelimit(ngx_http_request_t *r, ngx_http_sluice_ctx_t *ctx)
{
    u_char                   *end;
    int64_t                   values[4];
    ngx_uint_t                i, first, last, n;
    ngx_list_part_t          *part;
    ngx_table_elt_t          *h;
    ngx_http_sluice_rule_t   *rule;
    struct sluice_decision   *d;

    d = &ctx->decision;
    part = r->headers_out.headers.last;

    if (d->allowed && d->rule >= 0 && d->status != SLUICE_STATUS_LOCKED
        && (ngx_uint_t) d->rule < ctx->table->nrules
        && r->headers_out.headers.nalloc - part->nelts >= 3)
    {
        /*
         * The common case, an admitted request: its three lines in one go, the limit's
         * text the rule's own (made when the table was opened), the remaining count
         * formatted where its line points, the reset time as the worker last formatted it.
         */
        rule = &ctx->table->rules[d->rule];
        h = (ngx_table_elt_t *) part->elts + part->nelts;
        part->nelts += 3;

        ngx_http_sluice_header_name(&h[0], NGX_HTTP_SLUICE_H_LIMIT);
        if (d->limit == rule->limit_value) {
            h[0].value = rule->limit;

        } else {
            ngx_http_sluice_number(ctx, NGX_HTTP_SLUICE_H_LIMIT, d->limit, &h[0].value);
        }

        ngx_http_sluice_header_name(&h[1], NGX_HTTP_SLUICE_H_REMAINING);
        end = ctx->numbers[NGX_HTTP_SLUICE_H_REMAINING] + NGX_INT64_LEN;
        h[1].value.data = ngx_http_sluice_decimal(end, d->remaining);
        h[1].value.len = end - h[1].value.data;

        ngx_http_sluice_header_name(&h[2], NGX_HTTP_SLUICE_H_RESET);
        ngx_http_sluice_number(ctx, NGX_HTTP_SLUICE_H_RESET, d->reset, &h[2].value);

        return NGX_OK;
    }

    /* a lockout's numbers count failures, not requests: they would read as a quota */
    first = (d->rule >= 0 && d->status != SLUICE_STATUS_LOCKED)
            ? NGX_HTTP_SLUICE_H_LIMIT : NGX_HTTP_SLUICE_H_RETRY;
    last = d->allowed ? NGX_HTTP_SLUICE_H_RESET : NGX_HTTP_SLUICE_H_RETRY;

    if (first > last) {
        return NGX_OK;
    }

    values[NGX_HTTP_SLUICE_H_LIMIT] = d->limit;
    values[NGX_HTTP_SLUICE_H_REMAINING] = d->remaining;
    values[NGX_HTTP_SLUICE_H_RESET] = d->reset;
    values[NGX_HTTP_SLUICE_H_RETRY] = d->retry_after;

    /* the lines in one go when the list's last part has room (it has 20 at first) */
    n = last - first + 1;

    if (r->headers_out.headers.nalloc - part->nelts >= n) {
        h = (ngx_table_elt_t *) part->elts + part->nelts;
        part->nelts += n;

    } else {
        h = NULL;
    }

    for (i = first; i <= last; i++, h = h ? h + 1 : NULL) {
        if (h == NULL) {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }
        }

        ngx_http_sluice_header_name(h, i);
        ngx_http_sluice_number(ctx, i, values[i], &h->value);
    }

    return NGX_OK;
}


/*
 * Adds the IETF draft's RateLimit-Policy (the rule's text, made when the table was opened)
 * and RateLimit headers of the decision, and Retry-After when refused.
 */
static ngx_int_t
ngx_http_sluice_add_ietf(ngx_http_request_t *r, ngx_http_sluice_ctx_t *ctx)
{
    u_char                   *p;
    ngx_str_t                 remaining, reset;
    ngx_table_elt_t          *h;
    ngx_http_sluice_rule_t   *rule;
    struct sluice_decision   *d;

    d = &ctx->decision;

    if (d->rule >= 0 && (ngx_uint_t) d->rule < ctx->table->nrules
        && d->status != SLUICE_STATUS_LOCKED)
    {
        rule = &ctx->table->rules[d->rule];

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_http_sluice_header_name(h, NGX_HTTP_SLUICE_H_POLICY);
        h->value = rule->policy;

        ngx_http_sluice_number(ctx, NGX_HTTP_SLUICE_H_REMAINING, d->remaining,
                               &remaining);
        ngx_http_sluice_number(ctx, NGX_HTTP_SLUICE_H_RESET, d->reset_after,
                               &reset);

        p = ngx_pnalloc(r->pool, rule->quoted_name.len + sizeof(";r=;t=") - 1
                                 + remaining.len + reset.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_http_sluice_header_name(h, NGX_HTTP_SLUICE_H_RATELIMIT);
        h->value.data = p;
        p = ngx_cpymem(p, rule->quoted_name.data, rule->quoted_name.len);
        p = ngx_cpymem(p, ";r=", 3);
        p = ngx_cpymem(p, remaining.data, remaining.len);
        p = ngx_cpymem(p, ";t=", 3);
        p = ngx_cpymem(p, reset.data, reset.len);
        h->value.len = p - h->value.data;
    }

    if (!d->allowed) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_http_sluice_header_name(h, NGX_HTTP_SLUICE_H_RETRY);
        ngx_http_sluice_number(ctx, NGX_HTTP_SLUICE_H_RETRY, d->retry_after,
                               &h->value);
    }

    return NGX_OK;
}


static void
ngx_http_sluice_outcome(ngx_http_request_t *r, ngx_http_sluice_ctx_t *ctx,
    ngx_http_sluice_loc_conf_t *slcf, ngx_uint_t failure)
{
    int                      rc;
    int64_t                  now;
    ngx_str_t                key;
    struct sluice_decision   d;

    if (ctx != NULL && ctx->table == slcf->table
        && ctx->category == slcf->category && ctx->key.len > 0)
    {
        key = ctx->key;

    } else if (ngx_http_sluice_key(r, slcf, &key) != NGX_OK) {
        return;
    }

    if (key.len == 0 || key.len > NGX_HTTP_SLUICE_MAX_KEY) {
        return;
    }

    now = ngx_http_sluice_now();

    if (!failure) {
        rc = sluice_success(slcf->table->sluice, (int) slcf->category,
                            key.data, key.len, now);
        if (rc != SLUICE_OK) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "sluice: success in table \"%V\" failed: %s",
                          &slcf->table->name, sluice_strerror(rc));
        }
        return;
    }

    d.size = sizeof(struct sluice_decision);

    rc = sluice_failure(slcf->table->sluice, (int) slcf->category, key.data,
                        key.len, now, &d);
    if (rc != SLUICE_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sluice: failure in table \"%V\" failed: %s",
                      &slcf->table->name, sluice_strerror(rc));
        return;
    }

    if (d.status == SLUICE_STATUS_LOCKED) {
        ngx_log_error(slcf->log_level, r->connection->log, 0,
                      "sluice: key \"%V\" locked out of category \"%V\" of "
                      "table \"%V\" for %uD s",
                      &key, &slcf->category_name, &slcf->table->name,
                      d.retry_after);
    }
}


static ngx_uint_t
ngx_http_sluice_status_in(ngx_array_t *statuses, ngx_uint_t status)
{
    ngx_uint_t   i, *s;

    if (statuses == NULL || statuses == NGX_CONF_UNSET_PTR) {
        return 0;
    }

    s = statuses->elts;

    for (i = 0; i < statuses->nelts; i++) {
        if (s[i] == status) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_sluice_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_uint_t                    status;
    ngx_http_sluice_ctx_t        *ctx;
    ngx_http_sluice_loc_conf_t   *slcf;
    ngx_http_sluice_main_conf_t  *smcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sluice_module);
    ctx = ngx_http_sluice_get_ctx(r, smcf);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sluice_module);

    /* failures and successes of a lockout, by the status of the response */

    if (slcf->table != NULL && slcf->has_lockout
        && (ctx == NULL || (!ctx->refused && !ctx->outcome_done)))
    {
        status = r->headers_out.status;

        if (ngx_http_sluice_status_in(slcf->failure_statuses, status)) {
            ngx_http_sluice_outcome(r, ctx, slcf, 1);

        } else if (ngx_http_sluice_status_in(slcf->success_statuses, status)) {
            ngx_http_sluice_outcome(r, ctx, slcf, 0);
        }

        if (ctx != NULL && ctx != &ngx_http_sluice_admitted) {
            ctx->outcome_done = 1;
        }
    }

    /* the rate-limit headers of the check's decision */

    if (ctx == NULL || ctx->headers == NGX_HTTP_SLUICE_HEADERS_OFF
        || !ctx->checked || ctx->headers_done || ctx->dry_refused)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx->headers_done = 1;

    if (ctx->headers == NGX_HTTP_SLUICE_HEADERS_X_RATELIMIT) {
        rc = ngx_http_sluice_add_x_ratelimit(r, ctx);

    } else {
        rc = ngx_http_sluice_add_ietf(r, ctx);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* The hidden variable of the context's slot reads as not found; its slot is kept. */
static ngx_int_t
ngx_http_sluice_context_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    (void) r;
    (void) data;

    v->not_found = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sluice_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                       *p;
    uint32_t                      value;
    ngx_str_t                    *name;
    ngx_http_sluice_ctx_t        *ctx;
    ngx_http_sluice_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sluice_module);
    ctx = ngx_http_sluice_get_ctx(r, smcf);

    if (ctx == NULL || !ctx->checked) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (data == NGX_HTTP_SLUICE_VAR_STATUS) {
        if (ctx->dry_refused) {
            name = &ngx_http_sluice_status_names[SLUICE_STATUS_DRY_RUN_LIMITED];

        } else if (ctx->decision.status < NGX_HTTP_SLUICE_N_STATUSES) {
            name = &ngx_http_sluice_status_names[ctx->decision.status];

        } else {
            v->not_found = 1;
            return NGX_OK;
        }

        v->len = name->len;
        v->data = name->data;
        return NGX_OK;
    }

    value = (data == NGX_HTTP_SLUICE_VAR_REMAINING)
            ? ctx->decision.remaining : ctx->decision.retry_after;

    p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uD", value) - p;
    v->data = p;

    return NGX_OK;
}


static void *
ngx_http_sluice_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sluice_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sluice_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&smcf->tables, cf->pool, 4,
                       sizeof(ngx_http_sluice_table_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static void *
ngx_http_sluice_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sluice_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sluice_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->category_name = { 0, NULL };
     *     conf->key = NULL;
     *     conf->key_is_addr = 0;
     *     conf->sluice_file = { 0, NULL };
     *     conf->outcome_file = { 0, NULL };
     */

    conf->table = NGX_CONF_UNSET_PTR;
    conf->category = NGX_CONF_UNSET;
    conf->has_lockout = NGX_CONF_UNSET;
    conf->status_code = NGX_CONF_UNSET_UINT;
    conf->headers = NGX_CONF_UNSET_UINT;
    conf->dry_run = NGX_CONF_UNSET;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->failure_statuses = NGX_CONF_UNSET_PTR;
    conf->success_statuses = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_sluice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sluice_loc_conf_t *prev = parent;
    ngx_http_sluice_loc_conf_t *conf = child;

    ngx_uint_t  own_outcome;

    if (conf->table == NGX_CONF_UNSET_PTR) {
        conf->table = (prev->table == NGX_CONF_UNSET_PTR) ? NULL : prev->table;
        conf->category_name = prev->category_name;
        conf->category = prev->category;
        conf->has_lockout = prev->has_lockout;
        conf->key = prev->key;
        conf->key_is_addr = prev->key_is_addr;
        conf->sluice_file = prev->sluice_file;
        conf->sluice_line = prev->sluice_line;
    }

    ngx_conf_merge_uint_value(conf->status_code, prev->status_code,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_HTTP_SLUICE_HEADERS_X_RATELIMIT);
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    own_outcome = (conf->failure_statuses != NGX_CONF_UNSET_PTR
                   || conf->success_statuses != NGX_CONF_UNSET_PTR);

    if (conf->outcome_file.data == NULL) {
        conf->outcome_file = prev->outcome_file;
        conf->outcome_line = prev->outcome_line;
    }

    ngx_conf_merge_ptr_value(conf->failure_statuses, prev->failure_statuses,
                             NULL);
    ngx_conf_merge_ptr_value(conf->success_statuses, prev->success_statuses,
                             NULL);

    if (conf->failure_statuses == NULL && conf->success_statuses == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->table == NULL) {
        if (own_outcome) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "sluice_failure_status/sluice_success_status in a "
                          "location without \"sluice\" in %V:%ui",
                          &conf->outcome_file, conf->outcome_line);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (!conf->has_lockout) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "sluice_failure_status/sluice_success_status in %V:%ui: "
                      "category \"%V\" (\"sluice\" in %V:%ui) has no lockout "
                      "in the policy file \"%V\"",
                      &conf->outcome_file, conf->outcome_line,
                      &conf->category_name, &conf->sluice_file,
                      conf->sluice_line, &conf->table->policy_path);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* Reads the whole file `path` (NUL-terminated) into a NUL-terminated string. */
static char *
ngx_http_sluice_read_file(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *out)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;
    u_char          *text;
    off_t            size;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "sluice_table: cannot open the policy file \"%V\"",
                           path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "sluice_table: cannot stat the policy file \"%V\"",
                           path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size > 16 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice_table: the policy file \"%V\" is larger "
                           "than 16 MB", path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    text = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (text == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, text, (size_t) size);
    ngx_close_file(fd);

    if (n != (ssize_t) size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, n < 0 ? ngx_errno : 0,
                           "sluice_table: cannot read the policy file \"%V\"",
                           path);
        return NGX_CONF_ERROR;
    }

    text[size] = '\0';

    if (ngx_strlen(text) != (size_t) size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice_table: the policy file \"%V\" holds a "
                           "NUL byte", path);
        return NGX_CONF_ERROR;
    }
    out->data = text;
    out->len = (size_t) size;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sluice_full_name(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t conf_prefix)
{
    u_char  *p;

    if (ngx_conf_full_name(cf->cycle, name, conf_prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    /* NUL-terminate for the C calls */
    p = ngx_pnalloc(cf->pool, name->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, name->data, name->len);
    p[name->len] = '\0';
    name->data = p;

    return NGX_OK;
}


/*
 * For `nginx -t` when the table file does not exist yet: whether the master could create
 * it, i.e. its directory exists and is writable and searchable. Logs why not.
 */
static ngx_int_t
ngx_http_sluice_check_dir(ngx_conf_t *cf, ngx_http_sluice_table_t *t)
{
    u_char           *dir, *slash;
    ngx_err_t         err;
    ngx_file_info_t   fi;

    slash = NULL;
    for (dir = t->path.data; dir < t->path.data + t->path.len; dir++) {
        if (*dir == '/') {
            slash = dir;
        }
    }

    if (slash == NULL) {
        return NGX_OK;  /* ngx_conf_full_name made it absolute: not reached */
    }

    dir = ngx_pnalloc(cf->pool, slash - t->path.data + 2);
    if (dir == NULL) {
        return NGX_ERROR;
    }

    /* "/" for a file at the root */
    ngx_memcpy(dir, t->path.data, slash == t->path.data ? 1 : slash - t->path.data);
    dir[slash == t->path.data ? 1 : slash - t->path.data] = '\0';

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

    } else if (!ngx_is_dir(&fi)) {
        err = NGX_ENOTDIR;

    } else if (access((const char *) dir, W_OK | X_OK) != 0) {
        err = ngx_errno;

    } else {
        return NGX_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                       "sluice_table \"%V\": cannot create the table file "
                       "\"%V\" in the directory \"%s\"", &t->name, &t->path,
                       dir);

    return NGX_ERROR;
}


/*
 * Opens the table: in the process that will run the workers (the master, or nginx itself
 * without one) the table file is created or attached; `nginx -t` attaches read-only to an
 * existing file (checking it was made for this policy) or, when there is none, only opens a
 * private table to check the policy; the `-s` signaller only checks the policy.
 */
static char *
ngx_http_sluice_open(ngx_conf_t *cf, ngx_http_sluice_table_t *t)
{
    int                          rc;
    char                         err[1024];
    const char                  *path;
    ngx_file_info_t              fi;
    ngx_pool_cleanup_t          *cln;
    struct sluice_open_options   options;

    ngx_memzero(&options, sizeof(options));
    options.size = sizeof(options);
    path = (const char *) t->path.data;

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        path = NULL;

    } else if (ngx_test_config) {
        if (ngx_file_info(t->path.data, &fi) != NGX_FILE_ERROR) {
            options.flags = SLUICE_OPEN_READ_ONLY;

        } else if (ngx_errno == NGX_ENOENT
                   && ngx_http_sluice_check_dir(cf, t) == NGX_OK)
        {
            /* the master will create the file: only the policy is checked */
            path = NULL;

        } else {
            if (ngx_errno != NGX_ENOENT) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                                   "sluice_table \"%V\": cannot use the table "
                                   "file \"%V\"", &t->name, &t->path);
            }

            return NGX_CONF_ERROR;
        }

    } else {
        options.mode = (uint32_t) t->mode;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    err[0] = '\0';
    rc = sluice_open_with((const char *) t->policy.data, path,
                          path ? &options : NULL, &t->sluice, err, sizeof(err));

    if (rc == SLUICE_ERR_POLICY_MISMATCH && path != NULL) {
        rc = ngx_http_sluice_policy_changed(cf, t, &options, err, sizeof(err));
    }

    if (rc != SLUICE_OK) {
        if (rc == SLUICE_ERR_POLICY || rc == SLUICE_ERR_POLICY_TOO_LARGE
            || rc == SLUICE_ERR_UTF8)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sluice_table \"%V\": policy file \"%V\": %s",
                               &t->name, &t->policy_path, err);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sluice_table \"%V\": %s", &t->name,
                               err[0] ? err : sluice_strerror(rc));
        }

        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_sluice_table_cleanup;
    cln->data = t;

    return NGX_CONF_OK;
}


/*
 * The table file was made for another policy. `nginx -t` only checks the new policy and says
 * what the reload will do; the process that runs the workers migrates the file in place (every
 * lockout, the logs of unchanged rules, what is still exact of changed ones), then opens it.
 * Workers of the old configuration keep the old table mapped until they exit, and what they
 * record after the migration read their keys is not carried. If the migration fails, so does
 * the reload, and the old workers keep serving.
 */
static int
ngx_http_sluice_policy_changed(ngx_conf_t *cf, ngx_http_sluice_table_t *t,
    struct sluice_open_options *options, char *err, size_t err_cap)
{
    int                       rc;
    const char               *path;
    struct sluice_migration   report;

    path = (const char *) t->path.data;

    if (ngx_test_config) {
        rc = sluice_open_with((const char *) t->policy.data, NULL, NULL,
                              &t->sluice, err, err_cap);
        if (rc == SLUICE_OK) {
            ngx_conf_log_error(NGX_LOG_NOTICE, cf, 0,
                               "sluice_table \"%V\": the table file \"%V\" was "
                               "made for another policy: starting or reloading "
                               "nginx migrates it to \"%V\"",
                               &t->name, &t->path, &t->policy_path);
        }

        return rc;
    }

    ngx_memzero(&report, sizeof(report));
    report.size = sizeof(report);
    err[0] = '\0';

    rc = sluice_migrate(path, path, (const char *) t->policy.data, &report,
                        err, err_cap);
    if (rc != SLUICE_OK) {
        return rc;
    }

    ngx_conf_log_error(NGX_LOG_NOTICE, cf, 0,
                       "sluice_table \"%V\": the policy changed: migrated the "
                       "table file \"%V\" (%uL keys carried, %uL of them locked, "
                       "%uL expired, %uL dropped for want of room)",
                       &t->name, &t->path, report.keys, report.locked_keys,
                       report.expired, report.dropped);

    err[0] = '\0';
    return sluice_open_with((const char *) t->policy.data, path, options,
                            &t->sluice, err, err_cap);
}


static void
ngx_http_sluice_table_cleanup(void *data)
{
    ngx_http_sluice_table_t  *t = data;

    /* the configuration is gone (a reload replaced it, or it failed): drop the mapping */
    sluice_close(t->sluice);
    t->sluice = NULL;
}


/*
 * The IETF header texts of every rule of the table's policy, so that a response's
 * RateLimit-Policy is a pointer to one of them and its RateLimit needs only two numbers.
 */
static ngx_int_t
ngx_http_sluice_describe_rules(ngx_conf_t *cf, ngx_http_sluice_table_t *t)
{
    int                       rc;
    u_char                   *p;
    size_t                    len;
    int32_t                   i;
    ngx_array_t               rules;
    ngx_http_sluice_rule_t   *rule;
    struct sluice_rule_info   info;

    if (ngx_array_init(&rules, cf->pool, 8, sizeof(ngx_http_sluice_rule_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; /* void */; i++) {
        ngx_memzero(&info, sizeof(struct sluice_rule_info));
        info.size = sizeof(struct sluice_rule_info);

        rc = sluice_describe_rule(t->sluice, i, &info);
        if (rc == SLUICE_ERR_ARGUMENT) {
            break;  /* past the last rule */
        }

        if (rc != SLUICE_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sluice_table \"%V\": cannot describe rule %D: %s",
                               &t->name, i, sluice_strerror(rc));
            return NGX_ERROR;
        }

        rule = ngx_array_push(&rules);
        if (rule == NULL) {
            return NGX_ERROR;
        }

        len = ngx_strlen(info.category_name);

        p = ngx_pnalloc(cf->pool, len + 2);
        if (p == NULL) {
            return NGX_ERROR;
        }

        rule->quoted_name.data = p;
        rule->quoted_name.len = ngx_sprintf(p, "\"%s\"", info.category_name) - p;

        p = ngx_pnalloc(cf->pool, NGX_INT32_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        rule->limit.data = p;
        rule->limit.len = ngx_sprintf(p, "%uD", info.limit) - p;
        rule->limit_value = info.limit;

        p = ngx_pnalloc(cf->pool, len + 2 + sizeof(";q=;w=") - 1
                                  + NGX_INT32_LEN + NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* w: the window in seconds, rounded up (as the library's own headers) */
        rule->policy.data = p;
        rule->policy.len = ngx_sprintf(p, "\"%s\";q=%uD;w=%L", info.category_name,
                                       info.limit,
                                       info.window_ms / 1000
                                       + (info.window_ms % 1000 != 0))
                           - p;
    }

    t->rules = rules.elts;
    t->nrules = rules.nelts;

    return NGX_OK;
}


static char *
ngx_http_sluice_table(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sluice_main_conf_t  *smcf = conf;

    char                      *rv;
    ngx_int_t                  mode;
    ngx_str_t                 *value, s;
    ngx_uint_t                 i;
    ngx_http_sluice_table_t   *t, **tp;

    (void) cmd;

    value = cf->args->elts;

    tp = smcf->tables.elts;
    for (i = 0; i < smcf->tables.nelts; i++) {
        if (tp[i]->name.len == value[1].len
            && ngx_strncmp(tp[i]->name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sluice_table \"%V\" is declared twice",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    t = ngx_pcalloc(cf->pool, sizeof(ngx_http_sluice_table_t));
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->name = value[1];
    t->mode = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "path=", 5) == 0) {
            t->path.len = value[i].len - 5;
            t->path.data = value[i].data + 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "policy=", 7) == 0) {
            t->policy_path.len = value[i].len - 7;
            t->policy_path.data = value[i].data + 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "mode=", 5) == 0) {
            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            mode = 0;
            if (s.len == 0 || s.len > 4) {
                goto bad_mode;
            }

            for (; s.len; s.len--, s.data++) {
                if (*s.data < '0' || *s.data > '7') {
                    goto bad_mode;
                }
                mode = mode * 8 + (*s.data - '0');
            }

            if (mode & ~0666) {
                goto bad_mode;
            }

            t->mode = (ngx_uint_t) mode;
            continue;

        bad_mode:
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sluice_table \"%V\": invalid \"%V\": expected "
                               "an octal mode within 0666, such as mode=0660",
                               &t->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice_table \"%V\": invalid parameter \"%V\" "
                           "(expected path=FILE, policy=FILE or mode=MODE)",
                           &t->name, &value[i]);
        return NGX_CONF_ERROR;
    }

    if (t->path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice_table \"%V\": missing path=FILE "
                           "(the table file, e.g. path=/dev/shm/%V.sluice)",
                           &t->name, &t->name);
        return NGX_CONF_ERROR;
    }

    if (t->policy_path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice_table \"%V\": missing policy=FILE "
                           "(the policy file)", &t->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_sluice_full_name(cf, &t->path, 0) != NGX_OK
        || ngx_http_sluice_full_name(cf, &t->policy_path, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_sluice_read_file(cf, &t->policy_path, &t->policy);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_http_sluice_open(cf, t);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_sluice_describe_rules(cf, t) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tp = ngx_array_push(&smcf->tables);
    if (tp == NULL) {
        return NGX_CONF_ERROR;
    }

    *tp = t;

    return NGX_CONF_OK;
}


static char *
ngx_http_sluice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sluice_loc_conf_t *slcf = conf;

    int                                 id;
    u_char                             *name;
    ngx_str_t                          *value, category, key;
    ngx_uint_t                          i;
    ngx_http_sluice_table_t           **tp, *table;
    ngx_http_sluice_main_conf_t        *smcf;
    struct sluice_category_info         info;
    ngx_http_compile_complex_value_t    ccv;

    (void) cmd;

    if (slcf->table != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cf->args->nelts != 2) {
            return "takes no parameters after \"off\"";
        }

        slcf->table = NULL;
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sluice_module);

    table = NULL;
    tp = smcf->tables.elts;
    for (i = 0; i < smcf->tables.nelts; i++) {
        if (tp[i]->name.len == value[1].len
            && ngx_strncmp(tp[i]->name.data, value[1].data, value[1].len) == 0)
        {
            table = tp[i];
            break;
        }
    }

    if (table == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice: no table \"%V\" (declare it with "
                           "sluice_table at the http level, before its use)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&category, "global");
    ngx_str_set(&key, "$remote_addr");
    slcf->key_is_addr = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "category=", 9) == 0) {
            category.len = value[i].len - 9;
            category.data = value[i].data + 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            key.len = value[i].len - 4;
            key.data = value[i].data + 4;

            if (key.len == 0) {
                return "has an empty key=";
            }

            slcf->key_is_addr = (key.len == 12
                                 && ngx_strncmp(key.data, "$remote_addr", 12) == 0);

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice: invalid parameter \"%V\" (expected "
                           "category=NAME or key=VALUE)", &value[i]);
        return NGX_CONF_ERROR;
    }

    name = ngx_pnalloc(cf->pool, category.len + 1);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(name, category.data, category.len);
    name[category.len] = '\0';

    id = sluice_category(table->sluice, (const char *) name);
    if (id < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice: table \"%V\": the policy file \"%V\" has no "
                           "category \"%V\"", &table->name,
                           &table->policy_path, &category);
        return NGX_CONF_ERROR;
    }

    slcf->key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (slcf->key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &key;
    ccv.complex_value = slcf->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    slcf->table = table;
    slcf->category_name = category;
    slcf->category = id;
    ngx_memzero(&info, sizeof(struct sluice_category_info));
    info.size = sizeof(struct sluice_category_info);

    if (sluice_describe_category(table->sluice, id, &info) != SLUICE_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sluice: table \"%V\": cannot describe category "
                           "\"%V\"", &table->name, &category);
        return NGX_CONF_ERROR;
    }

    slcf->has_lockout = (info.lockout_rule >= 0);
    slcf->sluice_file = cf->conf_file->file.name;
    slcf->sluice_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_http_sluice_statuses(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sluice_loc_conf_t *slcf = conf;

    ngx_int_t      n;
    ngx_str_t     *value;
    ngx_uint_t     i, *s;
    ngx_array_t  **statuses;

    statuses = (ngx_array_t **) ((char *) conf + cmd->offset);

    if (*statuses != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *statuses = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                 sizeof(ngx_uint_t));
    if (*statuses == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        n = ngx_atoi(value[i].data, value[i].len);
        if (n < 100 || n > 599) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid status \"%V\" (expected 100 to 599)",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(*statuses);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = (ngx_uint_t) n;
    }

    if (slcf->outcome_file.data == NULL) {
        slcf->outcome_file = cf->conf_file->file.name;
        slcf->outcome_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sluice_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sluice_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    var = ngx_http_add_variable(cf, &ngx_http_sluice_context_name,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_sluice_context_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sluice_init(ngx_conf_t *cf)
{
    ngx_uint_t                    i;
    ngx_http_handler_pt          *h;
    ngx_http_variable_t          *var, *v;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_sluice_main_conf_t  *smcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sluice_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_sluice_header_filter;

    /* variables that the configuration uses have been indexed while it was parsed */
    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sluice_module);
    var = cmcf->variables.elts;

    for (i = 0; i < cmcf->variables.nelts; i++) {
        for (v = ngx_http_sluice_vars; v->name.len; v++) {
            if (var[i].name.len == v->name.len
                && ngx_strncasecmp(var[i].name.data, v->name.data, v->name.len)
                   == 0)
            {
                smcf->variables_used = 1;
            }
        }
    }

    smcf->ctx_index = ngx_http_get_variable_index(cf,
                                                  &ngx_http_sluice_context_name);
    if (smcf->ctx_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(ngx_http_sluice_header_names)
                    / sizeof(ngx_http_sluice_header_name_t); i++)
    {
        ngx_http_sluice_header_names[i].hash =
            ngx_hash_key(ngx_http_sluice_header_names[i].lowcase,
                         ngx_http_sluice_header_names[i].name.len);
    }

    return NGX_OK;
}
