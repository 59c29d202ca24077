"""The joint-meeting office (联席会议办公室): observes every transfer's signed metadata,
tracks legal deadlines, urges late agencies, escalates, and publishes statistics."""
