package pcsc

// serviceName is what Windows calls its PC/SC resource manager (SCardSvr,
// "Smart Card" in services.msc).
const serviceName = "the Smart Card service"
