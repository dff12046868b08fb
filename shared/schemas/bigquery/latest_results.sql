-- Newest enrichment result for each tenant and input email.
--
-- Template: Terraform's templatefile() and enrichment_payload::schemas::render_view_sql fill
-- in the project and dataset placeholders of the two table names.
--
-- Pub/Sub delivers at least once, so one message can be stored more than once: rows of one
-- message_id collapse to the first one stored. The tenant is the one the partner echoed, or
-- else each tenant whose delivery of the same email to the same partner succeeded. A result
-- that matches neither keeps a null tenant_id. Emails are compared lowercased.
WITH unique_results AS (
  SELECT *
  FROM `${project_id}.${dataset_id}.results`
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY stored_at ASC) = 1
),
delivered AS (
  SELECT DISTINCT
    partner_id,
    tenant_id,
    LOWER(input_email) AS email_key
  FROM `${project_id}.${dataset_id}.deliveries`
  WHERE status = 'delivered'
    AND tenant_id IS NOT NULL
),
tenant_results AS (
  SELECT
    COALESCE(r.tenant_id, d.tenant_id) AS tenant_id,
    r.partner_id,
    r.input_email,
    r.work_email,
    r.phone_number,
    r.linkedin_url,
    r.name,
    r.company_domain,
    r.extra,
    r.message_id,
    r.delivery_id,
    r.received_at,
    r.stored_at
  FROM unique_results AS r
  LEFT JOIN delivered AS d
    ON r.tenant_id IS NULL
    AND d.partner_id = r.partner_id
    AND d.email_key = LOWER(r.input_email)
)
SELECT
  tenant_id,
  partner_id,
  input_email,
  work_email,
  phone_number,
  linkedin_url,
  name,
  company_domain,
  extra,
  message_id,
  delivery_id,
  received_at
FROM tenant_results
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY tenant_id, LOWER(input_email)
  ORDER BY received_at DESC, stored_at DESC, message_id DESC
) = 1
