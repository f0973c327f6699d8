/** The outbound webhooks' fixed vocabularies, as every other feature (the JSON API) may see them. */

/** What happened to a delivery (see the migration): queued → delivering → delivered, failed or dead. */
export const DELIVERY_STATUSES = ['queued', 'delivering', 'delivered', 'failed', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** The request methods a destination may use. */
export const DESTINATION_METHODS = ['POST', 'GET', 'PUT', 'PATCH'] as const;
export type DestinationMethod = (typeof DESTINATION_METHODS)[number];
