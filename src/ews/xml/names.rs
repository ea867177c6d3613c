//! Namespace URIs and element and attribute local names of the EWS wire format.
//!
//! Parsing matches on (namespace, local name) pairs, never on prefixes, so these are
//! the bare local names; the request builders add their own prefixes.

/// SOAP 1.1 envelope namespace.
pub(crate) const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (`m:`).
pub(crate) const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:`).
pub(crate) const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// SOAP Autodiscover namespace.
pub(crate) const NS_AUTODISCOVER: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
/// WS-Addressing namespace, used in Autodiscover request headers.
pub(crate) const NS_WS_ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
/// EWS fault detail namespace (`e:`).
pub(crate) const NS_ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

// SOAP envelope.
pub(crate) const ENVELOPE: &str = "Envelope";
pub(crate) const BODY: &str = "Body";
pub(crate) const FAULT: &str = "Fault";
pub(crate) const FAULT_CODE: &str = "faultcode";
pub(crate) const FAULT_STRING: &str = "faultstring";
pub(crate) const DETAIL: &str = "detail";
pub(crate) const MESSAGE: &str = "Message";

// Response messages.
pub(crate) const RESPONSE_MESSAGES: &str = "ResponseMessages";
pub(crate) const RESPONSE_CODE: &str = "ResponseCode";
pub(crate) const MESSAGE_TEXT: &str = "MessageText";
pub(crate) const MESSAGE_XML: &str = "MessageXml";
pub(crate) const VALUE: &str = "Value";
pub(crate) const RESPONSE_CLASS: &str = "ResponseClass";
pub(crate) const NAME: &str = "Name";
pub(crate) const BACK_OFF_MILLISECONDS: &str = "BackOffMilliseconds";
pub(crate) const CLASS_ERROR: &str = "Error";

// Subscriptions and streaming.
pub(crate) const SUBSCRIPTION_ID: &str = "SubscriptionId";
pub(crate) const NOTIFICATIONS: &str = "Notifications";
pub(crate) const NOTIFICATION: &str = "Notification";
pub(crate) const ERROR_SUBSCRIPTION_IDS: &str = "ErrorSubscriptionIds";
pub(crate) const CONNECTION_STATUS: &str = "ConnectionStatus";
pub(crate) const CONNECTION_OK: &str = "OK";
pub(crate) const CONNECTION_CLOSED: &str = "Closed";
pub(crate) const CREATED_EVENT: &str = "CreatedEvent";
pub(crate) const MODIFIED_EVENT: &str = "ModifiedEvent";
pub(crate) const DELETED_EVENT: &str = "DeletedEvent";
pub(crate) const MOVED_EVENT: &str = "MovedEvent";
pub(crate) const COPIED_EVENT: &str = "CopiedEvent";
pub(crate) const NEW_MAIL_EVENT: &str = "NewMailEvent";
pub(crate) const FREE_BUSY_CHANGED_EVENT: &str = "FreeBusyChangedEvent";
pub(crate) const STATUS_EVENT: &str = "StatusEvent";
pub(crate) const WATERMARK: &str = "Watermark";
pub(crate) const TIME_STAMP: &str = "TimeStamp";
pub(crate) const FOLDER_ID: &str = "FolderId";
pub(crate) const PARENT_FOLDER_ID: &str = "ParentFolderId";
pub(crate) const OLD_ITEM_ID: &str = "OldItemId";
pub(crate) const OLD_PARENT_FOLDER_ID: &str = "OldParentFolderId";

// Items and folders.
pub(crate) const ITEM_ID: &str = "ItemId";
pub(crate) const ATTR_ID: &str = "Id";
pub(crate) const ATTR_CHANGE_KEY: &str = "ChangeKey";
pub(crate) const ITEMS: &str = "Items";
pub(crate) const SYNC_STATE: &str = "SyncState";
pub(crate) const INCLUDES_LAST_ITEM_IN_RANGE: &str = "IncludesLastItemInRange";
pub(crate) const CHANGES: &str = "Changes";
pub(crate) const CREATE: &str = "Create";
pub(crate) const UPDATE: &str = "Update";
pub(crate) const DELETE: &str = "Delete";
pub(crate) const ROOT_FOLDER: &str = "RootFolder";
pub(crate) const TOTAL_ITEMS_IN_VIEW: &str = "TotalItemsInView";
pub(crate) const FOLDERS: &str = "Folders";
pub(crate) const TOTAL_COUNT: &str = "TotalCount";

// Calendar item fields.
pub(crate) const SUBJECT: &str = "Subject";
pub(crate) const LAST_MODIFIED_TIME: &str = "LastModifiedTime";
pub(crate) const UID: &str = "UID";
pub(crate) const RECURRENCE_ID: &str = "RecurrenceId";
pub(crate) const START: &str = "Start";
pub(crate) const END: &str = "End";
pub(crate) const ORIGINAL_START: &str = "OriginalStart";
pub(crate) const IS_ALL_DAY_EVENT: &str = "IsAllDayEvent";
pub(crate) const LOCATION: &str = "Location";
pub(crate) const IS_CANCELLED: &str = "IsCancelled";
pub(crate) const IS_RECURRING: &str = "IsRecurring";
pub(crate) const CALENDAR_ITEM_TYPE: &str = "CalendarItemType";
pub(crate) const ORGANIZER: &str = "Organizer";
pub(crate) const REQUIRED_ATTENDEES: &str = "RequiredAttendees";
pub(crate) const OPTIONAL_ATTENDEES: &str = "OptionalAttendees";
pub(crate) const RESOURCES: &str = "Resources";
pub(crate) const ATTENDEE: &str = "Attendee";
pub(crate) const MAILBOX: &str = "Mailbox";
pub(crate) const EMAIL_ADDRESS: &str = "EmailAddress";
pub(crate) const RESPONSE_TYPE: &str = "ResponseType";
pub(crate) const APPOINTMENT_STATE: &str = "AppointmentState";
pub(crate) const START_TIME_ZONE: &str = "StartTimeZone";
pub(crate) const END_TIME_ZONE: &str = "EndTimeZone";
pub(crate) const MODIFIED_OCCURRENCES: &str = "ModifiedOccurrences";
pub(crate) const DELETED_OCCURRENCES: &str = "DeletedOccurrences";
pub(crate) const OCCURRENCE: &str = "Occurrence";
pub(crate) const DELETED_OCCURRENCE: &str = "DeletedOccurrence";
pub(crate) const EXTENDED_PROPERTY: &str = "ExtendedProperty";
pub(crate) const EXTENDED_FIELD_URI: &str = "ExtendedFieldURI";
pub(crate) const ATTR_PROPERTY_SET_ID: &str = "PropertySetId";
pub(crate) const ATTR_DISTINGUISHED_PROPERTY_SET_ID: &str = "DistinguishedPropertySetId";
pub(crate) const ATTR_PROPERTY_ID: &str = "PropertyId";

// Recurrence.
pub(crate) const RECURRENCE: &str = "Recurrence";
pub(crate) const DAILY_RECURRENCE: &str = "DailyRecurrence";
pub(crate) const WEEKLY_RECURRENCE: &str = "WeeklyRecurrence";
pub(crate) const ABSOLUTE_MONTHLY_RECURRENCE: &str = "AbsoluteMonthlyRecurrence";
pub(crate) const RELATIVE_MONTHLY_RECURRENCE: &str = "RelativeMonthlyRecurrence";
pub(crate) const ABSOLUTE_YEARLY_RECURRENCE: &str = "AbsoluteYearlyRecurrence";
pub(crate) const RELATIVE_YEARLY_RECURRENCE: &str = "RelativeYearlyRecurrence";
pub(crate) const NO_END_RECURRENCE: &str = "NoEndRecurrence";
pub(crate) const END_DATE_RECURRENCE: &str = "EndDateRecurrence";
pub(crate) const NUMBERED_RECURRENCE: &str = "NumberedRecurrence";
pub(crate) const INTERVAL: &str = "Interval";
pub(crate) const DAYS_OF_WEEK: &str = "DaysOfWeek";
pub(crate) const FIRST_DAY_OF_WEEK: &str = "FirstDayOfWeek";
pub(crate) const DAY_OF_MONTH: &str = "DayOfMonth";
pub(crate) const DAY_OF_WEEK_INDEX: &str = "DayOfWeekIndex";
pub(crate) const MONTH: &str = "Month";
pub(crate) const START_DATE: &str = "StartDate";
pub(crate) const END_DATE: &str = "EndDate";
pub(crate) const NUMBER_OF_OCCURRENCES: &str = "NumberOfOccurrences";

/// PSETID_Meeting, the property set of the global object ids.
pub(crate) const PSETID_MEETING: &str = "6ED8DA90-450B-101B-98DA-00AA003F1305";
/// The distinguished name Exchange may use for PSETID_Meeting in responses.
pub(crate) const DISTINGUISHED_SET_MEETING: &str = "Meeting";
/// PidLidCleanGlobalObjectId's property id (0x23).
pub(crate) const CLEAN_GLOBAL_OBJECT_ID: u32 = 0x23;

// Operation responses and their response messages.
pub(crate) const SUBSCRIBE_RESPONSE: &str = "SubscribeResponse";
pub(crate) const SUBSCRIBE_RESPONSE_MESSAGE: &str = "SubscribeResponseMessage";
pub(crate) const UNSUBSCRIBE_RESPONSE: &str = "UnsubscribeResponse";
pub(crate) const UNSUBSCRIBE_RESPONSE_MESSAGE: &str = "UnsubscribeResponseMessage";
pub(crate) const GET_STREAMING_EVENTS_RESPONSE: &str = "GetStreamingEventsResponse";
pub(crate) const GET_STREAMING_EVENTS_RESPONSE_MESSAGE: &str = "GetStreamingEventsResponseMessage";
pub(crate) const SYNC_FOLDER_ITEMS_RESPONSE: &str = "SyncFolderItemsResponse";
pub(crate) const SYNC_FOLDER_ITEMS_RESPONSE_MESSAGE: &str = "SyncFolderItemsResponseMessage";
pub(crate) const GET_ITEM_RESPONSE: &str = "GetItemResponse";
pub(crate) const GET_ITEM_RESPONSE_MESSAGE: &str = "GetItemResponseMessage";
pub(crate) const FIND_ITEM_RESPONSE: &str = "FindItemResponse";
pub(crate) const FIND_ITEM_RESPONSE_MESSAGE: &str = "FindItemResponseMessage";
pub(crate) const GET_FOLDER_RESPONSE: &str = "GetFolderResponse";
pub(crate) const GET_FOLDER_RESPONSE_MESSAGE: &str = "GetFolderResponseMessage";

// Autodiscover GetUserSettings.
pub(crate) const GET_USER_SETTINGS_RESPONSE_MESSAGE: &str = "GetUserSettingsResponseMessage";
pub(crate) const RESPONSE: &str = "Response";
pub(crate) const ERROR_CODE: &str = "ErrorCode";
pub(crate) const ERROR_MESSAGE: &str = "ErrorMessage";
pub(crate) const USER_RESPONSES: &str = "UserResponses";
pub(crate) const USER_RESPONSE: &str = "UserResponse";
pub(crate) const REDIRECT_TARGET: &str = "RedirectTarget";
pub(crate) const USER_SETTINGS: &str = "UserSettings";
pub(crate) const USER_SETTING: &str = "UserSetting";
pub(crate) const AUTODISCOVER_NO_ERROR: &str = "NoError";
pub(crate) const SETTING_EXTERNAL_EWS_URL: &str = "ExternalEwsUrl";
pub(crate) const SETTING_INTERNAL_EWS_URL: &str = "InternalEwsUrl";
pub(crate) const SETTING_GROUPING_INFORMATION: &str = "GroupingInformation";

// Directory operations.
pub(crate) const RESOLVE_NAMES_RESPONSE: &str = "ResolveNamesResponse";
pub(crate) const CREATE_ITEM_RESPONSE: &str = "CreateItemResponse";
pub(crate) const CREATE_ITEM_RESPONSE_MESSAGE: &str = "CreateItemResponseMessage";
pub(crate) const RESOLVE_NAMES_RESPONSE_MESSAGE: &str = "ResolveNamesResponseMessage";
pub(crate) const RESOLUTION_SET: &str = "ResolutionSet";
pub(crate) const RESOLUTION: &str = "Resolution";
pub(crate) const GET_ROOM_LISTS_RESPONSE: &str = "GetRoomListsResponse";
pub(crate) const ROOM_LISTS: &str = "RoomLists";
pub(crate) const ADDRESS: &str = "Address";
pub(crate) const GET_ROOMS_RESPONSE: &str = "GetRoomsResponse";
pub(crate) const ROOMS: &str = "Rooms";
pub(crate) const ROOM: &str = "Room";
pub(crate) const ID: &str = "Id";
